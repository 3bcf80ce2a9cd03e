//! Newtypes for the numbers and names the ledger is made of.

use phalanx_crypto::{HexError, PublicKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// An account address: the account's 32-byte ed25519 public key, written as
/// 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Address(pub [u8; 32]);

/// Why a string is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid address {input:?}: an address is 64 lowercase hex characters (a 32-byte ed25519 public key): {reason}"
)]
pub struct AddressError {
    pub input: String,
    pub reason: HexError,
}

impl Address {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0)
    }
}

impl From<PublicKey> for Address {
    fn from(key: PublicKey) -> Self {
        Address(key.0)
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shown: String = s.chars().take(80).collect();
        s.parse::<PublicKey>()
            .map(Address::from)
            .map_err(|reason| AddressError {
                input: shown,
                reason,
            })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.public_key(), f)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.public_key().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        PublicKey::deserialize(d).map(Address::from)
    }
}

macro_rules! number_newtype {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

number_newtype!(
    /// An amount of the ledger's one currency, in its smallest unit.
    Amount(u64)
);
number_newtype!(
    /// An account's transaction counter: the nonce its next transaction must carry.
    Nonce(u64)
);
number_newtype!(
    /// A block's distance from genesis (genesis is 0).
    Height(u64)
);
number_newtype!(
    /// A validator's position in the genesis validator list.
    ValidatorIndex(u16)
);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }
}

impl Nonce {
    /// The nonce after this one, if there is one.
    pub fn next(self) -> Option<Nonce> {
        self.0.checked_add(1).map(Nonce)
    }
}

impl Height {
    pub const GENESIS: Height = Height(0);

    pub fn next(self) -> Option<Height> {
        self.0.checked_add(1).map(Height)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_parsing_accepts_only_64_lowercase_hex() {
        let good = "ab".repeat(32);
        let addr: Address = good.parse().unwrap();
        assert_eq!(addr.to_string(), good);
        for bad in [
            "".to_owned(),
            "ab".repeat(31),
            "ab".repeat(33),
            "AB".repeat(32),
            format!("0x{}", "ab".repeat(31)),
            format!(" {}", &good[1..]),
        ] {
            let err = bad.parse::<Address>().unwrap_err();
            assert!(err.to_string().contains("64 lowercase hex"), "{err}");
        }
    }

    #[test]
    fn numbers_serialize_as_plain_numbers() {
        assert_eq!(serde_json::to_string(&Amount(5)).unwrap(), "5");
        assert_eq!(serde_json::from_str::<Nonce>("7").unwrap(), Nonce(7));
        assert_eq!(Nonce(u64::MAX).next(), None);
        assert_eq!(Amount(u64::MAX).checked_add(Amount(1)), None);
    }
}
