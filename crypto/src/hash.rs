//! Content hashes.

use crate::fixed_bytes::{HexError, hex_newtype};
use sha2::{Digest, Sha256};

/// A 32-byte BLAKE3 digest: the content hash of blocks, transactions,
/// merkle nodes and genesis. Displays and parses as 64 lowercase hex
/// characters; binary encodings carry the 32 raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; 32]);

hex_newtype!(Hash, 32);

/// Why a string is not a [`Hash`].
pub type HashParseError = HexError;

impl Hash {
    /// The all-zero hash, used where no parent exists.
    pub const ZERO: Hash = Hash([0; 32]);

    /// BLAKE3 of `data`.
    pub fn digest(data: &[u8]) -> Hash {
        Hash(*blake3::hash(data).as_bytes())
    }

    /// BLAKE3 of the concatenation of `parts`, without copying them.
    pub fn digest_parts(parts: &[&[u8]]) -> Hash {
        let mut hasher = blake3::Hasher::new();
        for part in parts {
            hasher.update(part);
        }
        Hash(*hasher.finalize().as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl AsRef<[u8]> for Hash {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// SHA-256 of SHA-256 of `data`, the proof-of-work hash. Kept apart from
/// [`Hash`] so a proof-of-work digest is never mistaken for a content hash.
pub fn sha256d(data: &[u8]) -> [u8; 32] {
    let first = Sha256::digest(data);
    Sha256::digest(first).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blake3_matches_the_reference_vector_for_empty_input() {
        assert_eq!(
            Hash::digest(b"").to_string(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(Hash::digest_parts(&[b"ab", b"c"]), Hash::digest(b"abc"));
    }

    #[test]
    fn sha256d_matches_a_known_value() {
        // SHA-256d("hello"), as used for Bitcoin-style proof of work.
        assert_eq!(
            hex::encode(sha256d(b"hello")),
            "9595c9df90075148eb06860365df33584b75bff782a510c6cd4883a419833d50"
        );
    }

    #[test]
    fn hash_round_trips_through_text_json_and_postcard() {
        let h = Hash::digest(b"phalanx");
        let text = h.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<Hash>(), Ok(h));
        let json = serde_json::to_string(&h).unwrap_or_default();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<Hash>(&json).ok(), Some(h));
        let bin = postcard::to_stdvec(&h).unwrap_or_default();
        assert_eq!(bin.len(), 32);
        assert_eq!(postcard::from_bytes::<Hash>(&bin).ok(), Some(h));
        assert!(serde_json::from_str::<Hash>("\"abcd\"").is_err());
    }
}
