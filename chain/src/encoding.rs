//! Binary encoding: postcard, with a size limit on every decode.
//!
//! [`decode`] refuses input longer than its limit before reading it, and the
//! ledger's variable-length fields (a block's transactions, a certificate's
//! signatures) are read with [`bounded_vec`], which refuses a length prefix
//! above the field's maximum and never reserves more than the input could
//! hold. Together, decoding allocates at most a small multiple of the
//! (limited) input size, whatever the bytes claim.

use phalanx_crypto::Hash;
use serde::de::{DeserializeOwned, SeqAccess, Visitor};
use serde::{Deserializer, Serialize};
use std::fmt;
use std::marker::PhantomData;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("input is {len} bytes, the limit is {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("malformed input: {0}")]
    Malformed(String),
    #[error("{trailing} unexpected bytes after the value")]
    TrailingBytes { trailing: usize },
    #[error("not the canonical encoding of its value (an overlong integer)")]
    NonCanonical,
}

/// Encodes `value` with postcard.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // postcard into a Vec fails only for sequences of unknown length or
    // serializers that return errors; the ledger's types have neither, so a
    // failure here is a programming error, not bad input.
    #[allow(clippy::expect_used)]
    postcard::to_stdvec(value).expect("ledger types always encode")
}

/// Appends `value`'s encoding (as [`encode`] makes it) to `out`.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    let buffer = std::mem::take(out);
    // As in `encode`: the ledger's types always encode.
    #[allow(clippy::expect_used)]
    let encoded = postcard::to_extend(value, buffer).expect("ledger types always encode");
    *out = encoded;
}

/// The length of `value`'s encoding, computed without making it.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    // As in `encode`: the ledger's types always encode.
    #[allow(clippy::expect_used)]
    postcard::experimental::serialized_size(value).expect("ledger types always encode")
}

/// BLAKE3 of `value`'s encoding, the same as `Hash::digest(&encode(value))`
/// without making the encoding: the bytes go to the hasher through a small
/// buffer as they are produced.
pub fn digest<T: Serialize + ?Sized>(value: &T) -> Hash {
    let flavor = HashingFlavor {
        hasher: blake3::Hasher::new(),
        buffer: [0; HASHING_BUFFER],
        len: 0,
    };
    // As in `encode`: the ledger's types always encode (and this flavor
    // never refuses a byte).
    #[allow(clippy::expect_used)]
    postcard::serialize_with_flavor(value, flavor).expect("ledger types always encode")
}

/// Bytes [`HashingFlavor`] gathers before handing them to the hasher.
const HASHING_BUFFER: usize = 256;

/// A postcard output that hashes what it is given.
struct HashingFlavor {
    hasher: blake3::Hasher,
    buffer: [u8; HASHING_BUFFER],
    len: usize,
}

impl HashingFlavor {
    fn flush(&mut self) {
        if let Some(pending) = self.buffer.get(..self.len) {
            self.hasher.update(pending);
        }
        self.len = 0;
    }
}

impl postcard::ser_flavors::Flavor for HashingFlavor {
    type Output = Hash;

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        if self.len == HASHING_BUFFER {
            self.flush();
        }
        if let Some(slot) = self.buffer.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if data.len() > HASHING_BUFFER - self.len {
            self.flush();
            if data.len() >= HASHING_BUFFER {
                self.hasher.update(data);
                return Ok(());
            }
        }
        let end = self.len + data.len();
        if let Some(room) = self.buffer.get_mut(self.len..end) {
            room.copy_from_slice(data);
            self.len = end;
        }
        Ok(())
    }

    fn finalize(mut self) -> postcard::Result<Hash> {
        self.flush();
        Ok(Hash(*self.hasher.finalize().as_bytes()))
    }
}

/// Appends `value` as postcard encodes a `u64`: LEB128, seven bits a
/// byte, low bits first, the high bit set on every byte but the last.
pub fn push_varint(bytes: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        bytes.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
}

/// Decodes a `T` from exactly `bytes`, refusing input over `limit` bytes
/// and trailing bytes.
pub fn decode<T: DeserializeOwned + Serialize>(
    bytes: &[u8],
    limit: usize,
) -> Result<T, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    let (value, rest) =
        postcard::take_from_bytes(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes {
            trailing: rest.len(),
        });
    }
    // postcard reads overlong varints (`80 00` as 0); refusing them gives
    // every value exactly one accepted encoding, so raw bytes can be hashed,
    // deduplicated and stored without two nodes disagreeing.
    if !encodes_to(&value, bytes) {
        return Err(DecodeError::NonCanonical);
    }
    Ok(value)
}

/// Whether `value`'s encoding is exactly `bytes`: compared while
/// encoding, without building the encoding (for a block, 100 KB
/// allocated and copied on every decode), stopping at the first
/// difference.
fn encodes_to<T: Serialize + ?Sized>(value: &T, bytes: &[u8]) -> bool {
    let flavor = MatchingFlavor {
        expected: bytes,
        at: 0,
    };
    postcard::serialize_with_flavor(value, flavor).unwrap_or(false)
}

/// Compares what postcard writes with `expected`; fails at the first byte
/// that differs or is past its end.
struct MatchingFlavor<'a> {
    expected: &'a [u8],
    at: usize,
}

impl postcard::ser_flavors::Flavor for MatchingFlavor<'_> {
    type Output = bool;

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        match self.expected.get(self.at) {
            Some(&expected) if expected == byte => {
                self.at += 1;
                Ok(())
            }
            _ => Err(postcard::Error::SerializeBufferFull),
        }
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let end = self.at.saturating_add(data.len());
        match self.expected.get(self.at..end) {
            Some(expected) if expected == data => {
                self.at = end;
                Ok(())
            }
            _ => Err(postcard::Error::SerializeBufferFull),
        }
    }

    fn finalize(self) -> postcard::Result<bool> {
        Ok(self.at == self.expected.len())
    }
}

/// Reads a sequence of at most `MAX` elements (for `#[serde(deserialize_with)]`).
pub fn bounded_vec<'de, D, T, const MAX: usize>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    deserializer.deserialize_seq(BoundedVecVisitor::<T, MAX>(PhantomData))
}

struct BoundedVecVisitor<T, const MAX: usize>(PhantomData<T>);

impl<'de, T: serde::Deserialize<'de>, const MAX: usize> Visitor<'de> for BoundedVecVisitor<T, MAX> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a sequence of at most {MAX} elements")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        if let Some(len) = seq.size_hint()
            && len > MAX
        {
            return Err(serde::de::Error::invalid_length(len, &self));
        }
        // Reserve little up front: the length prefix is only a claim.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            if out.len() == MAX {
                return Err(serde::de::Error::invalid_length(MAX + 1, &self));
            }
            out.push(item);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Holder {
        #[serde(deserialize_with = "bounded_vec::<_, _, 3>")]
        items: Vec<u32>,
    }

    #[test]
    fn digest_is_blake3_of_the_encoding_at_every_size() {
        #[derive(Serialize)]
        struct Mixed {
            small: Vec<u8>,
            number: u64,
            blob: Vec<u8>,
            text: String,
        }
        // Sizes around the buffer (256) and BLAKE3's block (64) and chunk
        // (1,024), split in fields so pushes and extends interleave.
        for size in [
            0, 1, 63, 64, 65, 200, 255, 256, 257, 511, 1023, 1024, 1025, 5000,
        ] {
            let value = Mixed {
                small: vec![7; size % 13],
                number: size as u64 * 0x1_0001,
                blob: (0..size).map(|i| i as u8).collect(),
                text: "x".repeat(size / 3),
            };
            assert_eq!(digest(&value), Hash::digest(&encode(&value)), "size {size}");
        }
    }

    #[test]
    fn limits_are_enforced() {
        let ok = encode(&Holder {
            items: vec![1, 2, 3],
        });
        assert_eq!(
            decode::<Holder>(&ok, 100),
            Ok(Holder {
                items: vec![1, 2, 3]
            })
        );
        assert_eq!(
            decode::<Holder>(&ok, 2),
            Err(DecodeError::TooLarge {
                len: ok.len(),
                limit: 2
            })
        );
        let four = encode(&Holder {
            items: vec![1, 2, 3, 4],
        });
        assert!(matches!(
            decode::<Holder>(&four, 100),
            Err(DecodeError::Malformed(_))
        ));
        let mut trailing = ok.clone();
        trailing.push(0);
        assert_eq!(
            decode::<Holder>(&trailing, 100),
            Err(DecodeError::TrailingBytes { trailing: 1 })
        );
    }

    #[test]
    fn overlong_integers_are_refused() {
        assert_eq!(decode::<u64>(&[0x05], 10), Ok(5));
        assert_eq!(
            decode::<u64>(&[0x85, 0x00], 10),
            Err(DecodeError::NonCanonical)
        );
        assert_eq!(
            decode::<u64>(&[0x80, 0x00], 10),
            Err(DecodeError::NonCanonical)
        );
    }

    #[test]
    fn the_comparison_matches_only_the_exact_encoding() {
        let value = (
            Holder {
                items: vec![1, 300],
            },
            u64::MAX,
            "chain",
            [7u8; 32],
        );
        let bytes = encode(&value);
        assert!(encodes_to(&value, &bytes));
        for cut in 0..bytes.len() {
            assert!(!encodes_to(&value, &bytes[..cut]), "a prefix of {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(!encodes_to(&value, &longer));
        for at in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[at] ^= 1;
            assert!(!encodes_to(&value, &changed), "byte {at} changed");
        }
    }

    #[test]
    fn a_huge_length_prefix_is_refused_without_allocating() {
        // Length prefix u32::MAX as a varint, then nothing.
        let bytes = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(
            decode::<Holder>(&bytes, 100),
            Err(DecodeError::Malformed(_))
        ));
        #[derive(Debug, Serialize, Deserialize)]
        struct Wide {
            #[serde(deserialize_with = "bounded_vec::<_, _, { usize::MAX }>")]
            _items: Vec<[u64; 4]>,
        }
        assert!(matches!(
            decode::<Wide>(&bytes, 100),
            Err(DecodeError::Malformed(_))
        ));
    }
}
