//! Fixed-size byte strings: lowercase hex for people and JSON, raw bytes in
//! binary encodings.

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserializer, Serializer};
use std::fmt;

/// Why a hex string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("expected {expected} hex characters, got {got}")]
    WrongLength { expected: usize, got: usize },
    #[error("character {position} is {found:?}, not a lowercase hex digit (0-9, a-f)")]
    NotLowercaseHex { position: usize, found: char },
}

/// Parses exactly `2 * N` lowercase hex characters.
pub(crate) fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    if let Some((position, found)) = s
        .chars()
        .enumerate()
        .find(|(_, c)| !matches!(c, '0'..='9' | 'a'..='f'))
    {
        return Err(HexError::NotLowercaseHex { position, found });
    }
    if s.len() != 2 * N {
        return Err(HexError::WrongLength {
            expected: 2 * N,
            got: s.len(),
        });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| HexError::WrongLength {
        expected: 2 * N,
        got: s.len(),
    })?;
    Ok(out)
}

pub(crate) fn serialize<S: Serializer, const N: usize>(
    bytes: &[u8; N],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        serializer.serialize_str(&hex::encode(bytes))
    } else {
        let mut tuple = serializer.serialize_tuple(N)?;
        for b in bytes {
            tuple.serialize_element(b)?;
        }
        tuple.end()
    }
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
    deserializer: D,
) -> Result<[u8; N], D::Error> {
    if deserializer.is_human_readable() {
        deserializer.deserialize_str(HexVisitor::<N>)
    } else {
        deserializer.deserialize_tuple(N, TupleVisitor::<N>)
    }
}

struct HexVisitor<const N: usize>;

impl<const N: usize> Visitor<'_> for HexVisitor<N> {
    type Value = [u8; N];

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} lowercase hex characters", 2 * N)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse_hex(v).map_err(E::custom)
    }
}

struct TupleVisitor<const N: usize>;

impl<'de, const N: usize> Visitor<'de> for TupleVisitor<N> {
    type Value = [u8; N];

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{N} bytes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = [0u8; N];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = seq
                .next_element()?
                .ok_or_else(|| de::Error::invalid_length(i, &self))?;
        }
        Ok(out)
    }
}

/// Implements `Display`, `Debug`, `FromStr`, `Serialize` and `Deserialize`
/// for a newtype over `[u8; N]`, in hex.
macro_rules! hex_newtype {
    ($name:ident, $len:expr) => {
        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                for b in self.0.iter() {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::fixed_bytes::HexError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::fixed_bytes::parse_hex::<$len>(s).map(Self)
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $crate::fixed_bytes::serialize(&self.0, s)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::fixed_bytes::deserialize::<D, $len>(d).map(Self)
            }
        }
    };
}
pub(crate) use hex_newtype;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_hex_rejects_uppercase_odd_and_wrong_lengths() {
        assert_eq!(parse_hex::<2>("0aff"), Ok([0x0a, 0xff]));
        assert_eq!(
            parse_hex::<2>("0AFF"),
            Err(HexError::NotLowercaseHex {
                position: 1,
                found: 'A'
            })
        );
        assert_eq!(
            parse_hex::<2>("0af"),
            Err(HexError::WrongLength {
                expected: 4,
                got: 3
            })
        );
        assert_eq!(
            parse_hex::<2>("0aff00"),
            Err(HexError::WrongLength {
                expected: 4,
                got: 6
            })
        );
        assert!(matches!(
            parse_hex::<2>("0x0a"),
            Err(HexError::NotLowercaseHex { position: 1, .. })
        ));
        assert!(matches!(
            parse_hex::<1>("é"),
            Err(HexError::NotLowercaseHex { position: 0, .. })
        ));
    }
}
