//! ed25519 keys and signatures.

use crate::domain::SigningBytes;
use crate::fixed_bytes::hex_newtype;
use crate::zip215::PreparedKey;
use ed25519_dalek::{Signer, SigningKey};
use std::fmt;

/// An ed25519 public key: the 32 bytes of its compressed point, exactly as
/// they appear on the wire. Whether those bytes are a usable key is decided
/// when a signature is verified, so decoding one is cheap and never fails.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

hex_newtype!(PublicKey, 32);

/// An ed25519 signature: `R` (32 bytes) then `s` (32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

hex_newtype!(Signature, 64);

/// Why a signature was refused. Deliberately coarse: the reason a forged
/// signature fails is of no use to anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("public key is not a valid ed25519 point")]
    MalformedPublicKey,
    /// Never returned since verification follows ZIP 215, which accepts
    /// small-order keys (see [`crate::zip215`]); kept so that code matching
    /// on this enum keeps compiling.
    #[error("public key is a small-order point")]
    WeakPublicKey,
    #[error("signature does not verify under the ZIP 215 ed25519 rules")]
    Invalid,
}

/// The operating system could not provide randomness for a new key.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomnessError(String);

impl PublicKey {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Decodes this key once, to verify many signatures by it (see
    /// [`PreparedKey`]).
    pub fn prepare(&self) -> Result<PreparedKey, SignatureError> {
        PreparedKey::new(self)
    }

    /// Verifies `signature` over `message` under the ZIP 215 rules of
    /// [`crate::zip215`]: this key and the signature's `R` decode to curve
    /// points (non-canonical encodings and small-order points included),
    /// `s` is canonical (< ℓ), and `[8]([s]B − R − [k]A)` is the identity,
    /// with `k = SHA-512(R ‖ A ‖ message) mod ℓ` over the bytes as given.
    /// [`crate::verify_batch`] accepts exactly the same signatures.
    pub fn verify(
        &self,
        message: &SigningBytes,
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        crate::memo::verify(self, message, signature)
    }
}

impl Signature {
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
}

/// An ed25519 signing key with its public key. The secret is zeroed when
/// the value is dropped and never shown by `Debug`.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
    public: PublicKey,
}

impl Keypair {
    /// A new key from the operating system's randomness.
    pub fn generate() -> Result<Keypair, RandomnessError> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| RandomnessError(e.to_string()))?;
        Ok(Keypair::from_seed(&seed))
    }

    /// The key whose RFC 8032 secret (seed) is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Keypair {
        let signing = SigningKey::from_bytes(seed);
        let public = PublicKey(signing.verifying_key().to_bytes());
        Keypair { signing, public }
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The 32-byte secret seed. Handle with care.
    pub fn seed(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.signing.to_bytes())
    }

    /// Signs domain-separated bytes (see [`crate::Domain::begin`]). On a
    /// thread inside the simulator's [`crate::memo::with_memo`] with
    /// [`crate::memo::Signatures::Ideal`], makes an ideal signature instead.
    pub fn sign(&self, message: &SigningBytes) -> Signature {
        if let Some(ideal) = crate::memo::sign_ideal(&self.public, message) {
            return ideal;
        }
        let signature = Signature(self.signing.sign(message.as_bytes()).to_bytes());
        crate::memo::signed(&self.public, message, &signature);
        signature
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChainId, Domain};

    fn chain(id: &str) -> ChainId {
        ChainId::new(id).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn rfc8032_test_1_key_derivation_and_signature() {
        // RFC 8032 section 7.1, TEST 1 (empty message), signed raw through
        // dalek to check our seed handling; Phalanx itself never signs
        // without a domain tag.
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap_or_default()
                .try_into()
                .unwrap_or([0; 32]);
        let kp = Keypair::from_seed(&seed);
        assert_eq!(
            kp.public().to_string(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let sig = kp.signing.sign(b"");
        assert_eq!(
            hex::encode(sig.to_bytes()),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }

    #[test]
    fn sign_and_verify() {
        let kp = Keypair::from_seed(&[7; 32]);
        let msg = Domain::HotStuffVote
            .begin(&chain("c"))
            .bytes(b"payload")
            .finish();
        let sig = kp.sign(&msg);
        assert_eq!(kp.public().verify(&msg, &sig), Ok(()));
        let other = Domain::HotStuffVote
            .begin(&chain("c"))
            .bytes(b"payloaD")
            .finish();
        assert_eq!(
            kp.public().verify(&other, &sig),
            Err(SignatureError::Invalid)
        );
        let stranger = Keypair::from_seed(&[8; 32]).public();
        assert_eq!(stranger.verify(&msg, &sig), Err(SignatureError::Invalid));
    }

    #[test]
    fn small_order_keys_are_accepted_and_malformed_keys_refused() {
        let msg = Domain::Transaction.begin(&chain("c")).finish();
        // The identity point (y = 1, order 1) as key, R = the identity and
        // s = 0: [8]([0]B - R - [k]A) is the identity for every message, so
        // ZIP 215 accepts it. Anyone can sign for a small-order key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut sig = [0u8; 64];
        sig[0] = 1;
        let key = PublicKey(identity);
        assert_eq!(key.verify(&msg, &Signature(sig)), Ok(()));
        assert!(key.prepare().map(|k| k.is_small_order()).unwrap_or(false));
        // y = 0 with x = sqrt(-1) has order 4: R = 00..00 works as well.
        assert_eq!(key.verify(&msg, &Signature([0; 64])), Ok(()));
        // An honest key is not of small order, and the same bytes do not
        // verify under it.
        let honest = Keypair::from_seed(&[7; 32]).public();
        assert!(!honest.prepare().map(|k| k.is_small_order()).unwrap_or(true));
        assert_eq!(
            honest.verify(&msg, &Signature(sig)),
            Err(SignatureError::Invalid)
        );
        // y = 2 is not on the curve.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert_eq!(
            PublicKey(off_curve).verify(&msg, &Signature(sig)),
            Err(SignatureError::MalformedPublicKey)
        );
        assert_eq!(
            PublicKey(off_curve).prepare().map(|_| ()),
            Err(SignatureError::MalformedPublicKey)
        );
    }

    #[test]
    fn prepared_key_verifies_like_the_public_key() {
        let kp = Keypair::from_seed(&[3; 32]);
        let prepared = kp.public().prepare().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(prepared.public_key(), kp.public());
        for i in 0..4u64 {
            let msg = Domain::Transaction.begin(&chain("c")).u64_le(i).finish();
            let mut sig = kp.sign(&msg);
            assert_eq!(prepared.verify(&msg, &sig), Ok(()));
            sig.0[5] ^= 0x10;
            assert_eq!(prepared.verify(&msg, &sig), kp.public().verify(&msg, &sig));
            assert!(prepared.verify(&msg, &sig).is_err());
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let kp = Keypair::from_seed(&[0xab; 32]);
        let shown = format!("{kp:?}");
        assert!(!shown.contains(&"ab".repeat(32)), "{shown}");
        assert!(shown.contains(&kp.public().to_string()));
    }

    #[test]
    fn generated_keys_differ() {
        let a = Keypair::generate().map(|k| k.public()).ok();
        let b = Keypair::generate().map(|k| k.public()).ok();
        assert!(a.is_some());
        assert_ne!(a, b);
    }
}
