//! Serdes: how keys and values become bytes at the edges of a topology (source and sink topics,
//! repartition topics, state stores) and back. Inside a task, records travel as typed values and
//! are never serialized between processors.
//!
//! Ready serdes: [`BytesSerde`] (`Vec<u8>` as is), [`Utf8Serde`] (`String`), [`JsonSerde`] (any
//! `serde` type), [`FixedWidthSerde`] (the native format: integers and floats as little-endian
//! fixed-width bytes, the layout rkyv archives them in with the workspace's `little_endian` and
//! `unaligned` features, so a store value can later be read in place), [`NullableSerde`] (a null
//! key or value as `None`) and [`WindowedSerde`] (a windowed key: the key, then the window's
//! start and end).

use std::marker::PhantomData;
use std::sync::Arc;

use crate::record::{Window, Windowed};

/// Why bytes could not become a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SerdeError {
    /// The key or value was null and the serde has no value for null (use [`NullableSerde`]).
    #[error("a null key or value where the serde expects one")]
    Null,
    /// The bytes are not valid for the type.
    #[error("invalid bytes for {type_name}: {reason}")]
    Invalid {
        /// The type being read.
        type_name: &'static str,
        /// What was wrong.
        reason: String,
    },
}

/// Turns values of `T` into bytes and back. Serdes are shared by every task of a topology, hence
/// `Send + Sync`.
pub trait Serde<T>: Send + Sync + 'static {
    /// The bytes of `value`.
    fn serialize(&self, value: &T) -> Vec<u8>;
    /// The value these bytes hold.
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError>;

    /// The bytes of `value`, or `None` for a null key or value. Only [`NullableSerde`] answers
    /// `None`.
    fn serialize_nullable(&self, value: &T) -> Option<Vec<u8>> {
        Some(self.serialize(value))
    }

    /// The value of a key or value that may be null on the wire.
    fn deserialize_nullable(&self, bytes: Option<&[u8]>) -> Result<T, SerdeError> {
        match bytes {
            Some(bytes) => self.deserialize(bytes),
            None => Err(SerdeError::Null),
        }
    }
}

/// A serde shared between the topology and every task built from it.
pub type SharedSerde<T> = Arc<dyn Serde<T>>;

/// Types with a serde to use when the application names none: `String` (UTF-8), `Vec<u8>`
/// (bytes), the fixed-width numbers, and `Option<T>` of those (null as `None`).
pub trait DefaultSerde: Sized + 'static {
    /// The serde for this type.
    fn default_serde() -> SharedSerde<Self>;
}

/// Bytes as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesSerde;

impl Serde<Vec<u8>> for BytesSerde {
    fn serialize(&self, value: &Vec<u8>) -> Vec<u8> {
        value.clone()
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<Vec<u8>, SerdeError> {
        Ok(bytes.to_vec())
    }
}

/// Strings as UTF-8; invalid UTF-8 is an error, never replaced.
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8Serde;

impl Serde<String> for Utf8Serde {
    fn serialize(&self, value: &String) -> Vec<u8> {
        value.as_bytes().to_vec()
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<String, SerdeError> {
        String::from_utf8(bytes.to_vec()).map_err(|error| SerdeError::Invalid {
            type_name: "String",
            reason: error.to_string(),
        })
    }
}

/// Any `serde` type as JSON text.
pub struct JsonSerde<T>(PhantomData<fn() -> T>);

impl<T> JsonSerde<T> {
    /// The JSON serde for `T`.
    pub fn new() -> Self {
        JsonSerde(PhantomData)
    }
}

impl<T> Default for JsonSerde<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Serde<T> for JsonSerde<T>
where
    T: ::serde::Serialize + ::serde::de::DeserializeOwned + 'static,
{
    fn serialize(&self, value: &T) -> Vec<u8> {
        // Serializing a plain data type into a Vec fails only for maps with non-string keys or
        // a Serialize impl that itself fails: a bug in the application's type.
        serde_json::to_vec(value).expect("a JsonSerde type serializes to JSON")
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        serde_json::from_slice(bytes).map_err(|error| SerdeError::Invalid {
            type_name: std::any::type_name::<T>(),
            reason: error.to_string(),
        })
    }
}

/// The native format for numbers: little-endian, fixed width, no framing.
#[derive(Debug, Clone, Copy, Default)]
pub struct FixedWidthSerde;

macro_rules! fixed_width {
    ($($type:ty),*) => {$(
        impl Serde<$type> for FixedWidthSerde {
            fn serialize(&self, value: &$type) -> Vec<u8> {
                value.to_le_bytes().to_vec()
            }
            fn deserialize(&self, bytes: &[u8]) -> Result<$type, SerdeError> {
                let array = bytes.try_into().map_err(|_| SerdeError::Invalid {
                    type_name: stringify!($type),
                    reason: format!(
                        "{} bytes where {} were expected",
                        bytes.len(),
                        size_of::<$type>()
                    ),
                })?;
                Ok(<$type>::from_le_bytes(array))
            }
        }
        impl DefaultSerde for $type {
            fn default_serde() -> SharedSerde<Self> {
                Arc::new(FixedWidthSerde)
            }
        }
    )*};
}

fixed_width!(u64, i64, u32, i32, f64);

impl DefaultSerde for String {
    fn default_serde() -> SharedSerde<Self> {
        Arc::new(Utf8Serde)
    }
}

impl DefaultSerde for Vec<u8> {
    fn default_serde() -> SharedSerde<Self> {
        Arc::new(BytesSerde)
    }
}

impl<T: DefaultSerde> DefaultSerde for Option<T> {
    fn default_serde() -> SharedSerde<Self> {
        Arc::new(NullableSerde(T::default_serde()))
    }
}

/// A key or value that may be null: `None` is null on the wire, `Some` is the inner serde's.
pub struct NullableSerde<T>(pub SharedSerde<T>);

impl<T: 'static> Serde<Option<T>> for NullableSerde<T> {
    fn serialize(&self, value: &Option<T>) -> Vec<u8> {
        // A null has no bytes; where bytes are required (a store value) it is written as empty.
        value
            .as_ref()
            .map(|value| self.0.serialize(value))
            .unwrap_or_default()
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<Option<T>, SerdeError> {
        self.0.deserialize(bytes).map(Some)
    }
    fn serialize_nullable(&self, value: &Option<T>) -> Option<Vec<u8>> {
        value.as_ref().map(|value| self.0.serialize(value))
    }
    fn deserialize_nullable(&self, bytes: Option<&[u8]>) -> Result<Option<T>, SerdeError> {
        bytes.map(|bytes| self.0.deserialize(bytes)).transpose()
    }
}

/// A windowed key: the inner key's bytes, then the window's start and end (8 bytes each,
/// big-endian so that byte order is time order within a key, as Kafka's windowed key layout).
pub struct WindowedSerde<K>(pub SharedSerde<K>);

/// Bytes after the inner key in a windowed key: start and end.
const WINDOW_SUFFIX_BYTES: usize = 16;

impl<K: 'static> Serde<Windowed<K>> for WindowedSerde<K> {
    fn serialize(&self, value: &Windowed<K>) -> Vec<u8> {
        let mut bytes = self.0.serialize(&value.key);
        bytes.extend_from_slice(&value.window.start_ms.to_be_bytes());
        bytes.extend_from_slice(&value.window.end_ms.to_be_bytes());
        bytes
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<Windowed<K>, SerdeError> {
        let key_bytes = bytes
            .len()
            .checked_sub(WINDOW_SUFFIX_BYTES)
            .ok_or_else(|| SerdeError::Invalid {
                type_name: "Windowed",
                reason: format!("{} bytes, shorter than a window", bytes.len()),
            })?;
        let (key, window) = bytes.split_at(key_bytes);
        let (start, end) = window.split_at(8);
        Ok(Windowed {
            key: self.0.deserialize(key)?,
            window: Window {
                start_ms: i64::from_be_bytes(start.try_into().expect("8 bytes")),
                end_ms: i64::from_be_bytes(end.try_into().expect("8 bytes")),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_width_round_trips_and_refuses_wrong_lengths() {
        let bytes = Serde::<u64>::serialize(&FixedWidthSerde, &0x0102_0304_0506_0708);
        assert_eq!(bytes, [8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(
            Serde::<u64>::deserialize(&FixedWidthSerde, &bytes),
            Ok(0x0102_0304_0506_0708)
        );
        assert!(Serde::<u64>::deserialize(&FixedWidthSerde, &bytes[..7]).is_err());
        assert_eq!(
            Serde::<i32>::deserialize(&FixedWidthSerde, &(-5i32).to_le_bytes()),
            Ok(-5)
        );
    }

    #[test]
    fn utf8_refuses_invalid_bytes_instead_of_replacing_them() {
        assert!(Utf8Serde.deserialize(&[0xff, 0xfe]).is_err());
        assert_eq!(Utf8Serde.deserialize(b"word"), Ok("word".to_string()));
    }

    #[test]
    fn null_is_an_error_unless_the_serde_is_nullable() {
        assert_eq!(Utf8Serde.deserialize_nullable(None), Err(SerdeError::Null));
        let nullable = NullableSerde(Arc::new(Utf8Serde) as SharedSerde<String>);
        assert_eq!(nullable.deserialize_nullable(None), Ok(None));
        assert_eq!(nullable.serialize_nullable(&None), None);
        assert_eq!(
            nullable.serialize_nullable(&Some("a".into())),
            Some(b"a".to_vec())
        );
    }

    #[test]
    fn json_round_trips_serde_types() {
        let serde = JsonSerde::<Vec<(String, i64)>>::new();
        let value = vec![("a".to_string(), 1), ("b".to_string(), -2)];
        assert_eq!(serde.deserialize(&serde.serialize(&value)), Ok(value));
        assert!(serde.deserialize(b"{").is_err());
    }

    #[test]
    fn windowed_keys_round_trip_and_order_by_start_within_a_key() {
        let serde = WindowedSerde(Arc::new(Utf8Serde) as SharedSerde<String>);
        let early = Windowed::new("k".to_string(), Window::new(5, 10));
        let late = Windowed::new("k".to_string(), Window::new(300, 305));
        assert_eq!(
            serde.deserialize(&serde.serialize(&early)),
            Ok(early.clone())
        );
        assert!(serde.serialize(&early) < serde.serialize(&late));
        assert!(serde.deserialize(b"short").is_err());
    }
}
