//! Domain separation.
//!
//! Every byte string Phalanx signs has this shape:
//!
//! ```text
//! "PHALANX/" ‖ KIND ‖ "/v1" ‖ len(chain_id) as one byte ‖ chain_id ‖ payload
//! ```
//!
//! `KIND` is one of the [`Domain`] tags (upper-case ASCII letters and `-`,
//! never `/`), so the prefix up to and including `/v1` can be read back
//! unambiguously: no tag is a prefix of another's encoding, and two
//! different kinds never produce the same signed bytes. The chain id follows
//! with its length, so a signature made on one chain never verifies on
//! another. A transaction's signing bytes are exactly this layout with the
//! kind `TX` (docs/PROTOCOL.md).
//!
//! [`SigningBytes`] can only be built through [`Domain::begin`], so no code
//! path can sign a payload without its domain tag and chain id.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// The kinds of signed message. Each has its own tag; adding a kind means
/// adding a tag here, where the test below checks that all tags differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain {
    /// A transfer transaction.
    Transaction,
    /// A HotStuff proposal.
    HotStuffProposal,
    /// A HotStuff vote.
    HotStuffVote,
    /// A HotStuff timeout.
    HotStuffTimeout,
    /// A PBFT pre-prepare.
    PbftPrePrepare,
    /// A PBFT prepare.
    PbftPrepare,
    /// A PBFT commit.
    PbftCommit,
    /// A PBFT view change.
    PbftViewChange,
    /// A PBFT new view.
    PbftNewView,
    /// A PBFT checkpoint.
    PbftCheckpoint,
}

impl Domain {
    /// Every domain, for tests and documentation.
    pub const ALL: [Domain; 10] = [
        Domain::Transaction,
        Domain::HotStuffProposal,
        Domain::HotStuffVote,
        Domain::HotStuffTimeout,
        Domain::PbftPrePrepare,
        Domain::PbftPrepare,
        Domain::PbftCommit,
        Domain::PbftViewChange,
        Domain::PbftNewView,
        Domain::PbftCheckpoint,
    ];

    /// The `KIND` part of the domain tag.
    pub const fn kind(self) -> &'static str {
        match self {
            Domain::Transaction => "TX",
            Domain::HotStuffProposal => "HS-PROPOSAL",
            Domain::HotStuffVote => "HS-VOTE",
            Domain::HotStuffTimeout => "HS-TIMEOUT",
            Domain::PbftPrePrepare => "PBFT-PRE-PREPARE",
            Domain::PbftPrepare => "PBFT-PREPARE",
            Domain::PbftCommit => "PBFT-COMMIT",
            Domain::PbftViewChange => "PBFT-VIEW-CHANGE",
            Domain::PbftNewView => "PBFT-NEW-VIEW",
            Domain::PbftCheckpoint => "PBFT-CHECKPOINT",
        }
    }

    /// The full tag, `PHALANX/<KIND>/v1`.
    pub fn tag(self) -> String {
        format!("PHALANX/{}/v1", self.kind())
    }

    /// Starts the signing bytes of a message of this kind on `chain_id`.
    pub fn begin(self, chain_id: &ChainId) -> SigningBytesBuilder {
        let kind = self.kind().as_bytes();
        let mut bytes = Vec::with_capacity(8 + kind.len() + 3 + 1 + chain_id.len() + 96);
        bytes.extend_from_slice(b"PHALANX/");
        bytes.extend_from_slice(kind);
        bytes.extend_from_slice(b"/v1");
        // ChainId guarantees 1..=32 bytes, so the length fits in one byte.
        bytes.push(chain_id.len() as u8);
        bytes.extend_from_slice(chain_id.as_str().as_bytes());
        SigningBytesBuilder { bytes }
    }
}

/// Appends a payload after the domain header.
#[derive(Debug)]
pub struct SigningBytesBuilder {
    bytes: Vec<u8>,
}

impl SigningBytesBuilder {
    /// Appends raw bytes.
    pub fn bytes(mut self, data: &[u8]) -> Self {
        self.bytes.extend_from_slice(data);
        self
    }

    /// Appends a u64, little endian.
    pub fn u64_le(mut self, value: u64) -> Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub fn finish(self) -> SigningBytes {
        SigningBytes(self.bytes)
    }
}

/// The exact bytes a signature covers: a domain header and a payload.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningBytes(Vec<u8>);

impl SigningBytes {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Arbitrary bytes as a message, for test vectors made outside Phalanx
    /// (they have no domain header). Tests only: Phalanx never signs or
    /// verifies a message that did not come from a [`Domain`].
    #[cfg(test)]
    pub(crate) fn raw_for_tests(bytes: &[u8]) -> SigningBytes {
        SigningBytes(bytes.to_vec())
    }
}

impl fmt::Debug for SigningBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningBytes({})", hex::encode(&self.0))
    }
}

/// The longest chain id, in bytes.
pub const CHAIN_ID_MAX_LEN: usize = 32;

/// A chain id: 1 to 32 printable ASCII characters (`!` to `~`, no spaces).
///
/// Kept inline (a length and 32 bytes, zero past the length), not as a
/// `String`: every transaction carries one, so decoding or cloning a
/// transaction allocated for it, on every path a transaction takes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ChainId {
    len: u8,
    bytes: [u8; CHAIN_ID_MAX_LEN],
}

/// Why a string is not a chain id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainIdError {
    #[error("chain id is empty")]
    Empty,
    #[error("chain id is {len} bytes long, the limit is {CHAIN_ID_MAX_LEN}")]
    TooLong { len: usize },
    #[error(
        "chain id byte {position} is {byte:#04x}; only printable ASCII (0x21..=0x7e) is allowed"
    )]
    NotPrintableAscii { position: usize, byte: u8 },
}

impl ChainId {
    pub fn new(id: impl AsRef<str>) -> Result<Self, ChainIdError> {
        let id = id.as_ref();
        if id.is_empty() {
            return Err(ChainIdError::Empty);
        }
        if id.len() > CHAIN_ID_MAX_LEN {
            return Err(ChainIdError::TooLong { len: id.len() });
        }
        if let Some((position, &byte)) = id
            .as_bytes()
            .iter()
            .enumerate()
            .find(|(_, b)| !(0x21..=0x7e).contains(*b))
        {
            return Err(ChainIdError::NotPrintableAscii { position, byte });
        }
        let mut bytes = [0; CHAIN_ID_MAX_LEN];
        for (to, from) in bytes.iter_mut().zip(id.as_bytes()) {
            *to = *from;
        }
        Ok(ChainId {
            len: id.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        // Printable ASCII, checked in `new`: always UTF-8.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }

    /// Length in bytes (1 to 32).
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Always false: a chain id has at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Ordered as the strings are.
impl Ord for ChainId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl PartialOrd for ChainId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainId({:?})", self.as_str())
    }
}

impl FromStr for ChainId {
    type Err = ChainIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ChainId::new(s)
    }
}

impl Serialize for ChainId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ChainId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ChainId;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a chain id of 1 to 32 printable ASCII characters")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ChainId, E> {
                // Checked before copying, so a long string is never allocated.
                ChainId::new(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_distinct_and_slash_free() {
        let mut seen = std::collections::HashSet::new();
        for d in Domain::ALL {
            assert!(!d.kind().contains('/'), "{d:?}");
            assert!(
                d.kind()
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'-')
            );
            assert!(seen.insert(d.tag()), "duplicate tag {}", d.tag());
        }
    }

    #[test]
    fn transaction_header_is_the_documented_layout() {
        let chain = ChainId::new("phalanx-test").unwrap_or_else(|e| panic!("{e}"));
        let bytes = Domain::Transaction.begin(&chain).u64_le(7).finish();
        let mut expected = b"PHALANX/TX/v1".to_vec();
        expected.push(12);
        expected.extend_from_slice(b"phalanx-test");
        expected.extend_from_slice(&7u64.to_le_bytes());
        assert_eq!(bytes.as_bytes(), &expected[..]);
    }

    #[test]
    fn chain_id_rules() {
        assert!(ChainId::new("a").is_ok());
        assert!(ChainId::new("x".repeat(32)).is_ok());
        assert_eq!(ChainId::new(""), Err(ChainIdError::Empty));
        assert_eq!(
            ChainId::new("x".repeat(33)),
            Err(ChainIdError::TooLong { len: 33 })
        );
        assert_eq!(
            ChainId::new("a b"),
            Err(ChainIdError::NotPrintableAscii {
                position: 1,
                byte: b' '
            })
        );
        assert!(ChainId::new("é").is_err());
        assert!(serde_json::from_str::<ChainId>("\"\"").is_err());
        assert_eq!(
            serde_json::from_str::<ChainId>("\"main\"").ok(),
            ChainId::new("main").ok()
        );
    }

    #[test]
    fn a_chain_id_compares_and_prints_as_its_string() {
        let ids = ["a", "ab", "b", "main", "x".repeat(32).leak(), "~"];
        for x in ids {
            let id = ChainId::new(x).unwrap();
            assert_eq!((id.as_str(), id.len()), (x, x.len()));
            assert_eq!(id.to_string(), x);
            assert_eq!(format!("{id:?}"), format!("ChainId({x:?})"));
            assert_eq!(serde_json::to_string(&id).unwrap(), format!("{x:?}"));
            for y in ids {
                let other = ChainId::new(y).unwrap();
                assert_eq!(id.cmp(&other), x.cmp(y), "{x} against {y}");
                assert_eq!(id == other, x == y);
            }
        }
    }
}
