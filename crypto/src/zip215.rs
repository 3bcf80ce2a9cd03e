//! The ed25519 verification rule: ZIP 215.
//!
//! A signature `(R_bytes, s_bytes)` by key `A_bytes` on message `M` is
//! valid if and only if:
//!
//! 1. `A_bytes` and `R_bytes` decode to curve points. Decoding takes `y`
//!    from the low 255 bits (reduced mod p, so the encodings with
//!    `y ≥ p` are accepted) and the sign of `x` from the top bit (an `x` of
//!    zero with the sign bit set, "negative zero", is accepted). This is
//!    what `CompressedEdwardsY::decompress` does; the tests pin it down.
//! 2. `s_bytes` is the canonical encoding of a scalar: `s < ℓ`.
//! 3. `k = SHA-512(R_bytes ‖ A_bytes ‖ M) mod ℓ`, over the bytes as
//!    received (never re-encoded).
//! 4. `[8]([s]B − R − [k]A)` is the identity (the cofactored equation).
//!
//! Keys and `R` of small order, or with a small-order component, are
//! accepted. That is the point: every rule above is a function of the
//! bytes, and the cofactor in rule 4 removes the only component on which
//! a single equation and a random linear combination of equations could
//! disagree, so [`crate::verify_batch`] accepts exactly what this rule
//! accepts (its module documentation gives the argument). Honest RFC 8032
//! signatures satisfy the cofactorless equation `[s]B = R + [k]A`, hence
//! this one.
//!
//! Consequences a client must know:
//!
//! - A key of small order (one of the 8 points of order 1, 2, 4 or 8, in
//!   any of their 14 encodings) has no secret: `[8][k]A` is the identity,
//!   so anyone can sign any message for it (`R` = identity, `s` = 0).
//!   Such a key must not be trusted with anything (see
//!   [`PreparedKey::is_small_order`]).
//! - For any other key, a third party cannot turn a valid signature into
//!   another valid one: `s` is canonical, and changing `R_bytes` changes
//!   `k`. The signer can always make many valid signatures of one
//!   message, as in any ed25519 variant.

use crate::domain::SigningBytes;
use crate::keys::{PublicKey, Signature, SignatureError};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use sha2::{Digest, Sha512};
use std::fmt;

/// A public key decoded once (rule 1), to verify many signatures by it
/// without decompressing it each time. Keeps the key's bytes as received:
/// they, not a re-encoding of the point, go into `k`.
#[derive(Clone, Copy)]
pub struct PreparedKey {
    bytes: [u8; 32],
    point: EdwardsPoint,
    minus_point: EdwardsPoint,
}

impl PreparedKey {
    /// Decodes `key`. Fails with [`SignatureError::MalformedPublicKey`] if
    /// its bytes are not a curve point; every curve point is accepted.
    pub fn new(key: &PublicKey) -> Result<PreparedKey, SignatureError> {
        let point = decode_point(key.as_bytes()).ok_or(SignatureError::MalformedPublicKey)?;
        Ok(PreparedKey {
            bytes: *key.as_bytes(),
            point,
            minus_point: -point,
        })
    }

    /// The key, as the bytes it was decoded from.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.bytes)
    }

    /// True if the key is one of the 8 points of small order, for which
    /// anyone can make a valid signature on any message. Verification
    /// accepts such keys (ZIP 215); a caller that binds an identity to a
    /// key it did not derive itself (a genesis validator, say) may refuse
    /// them.
    pub fn is_small_order(&self) -> bool {
        self.point.is_small_order()
    }

    /// Verifies `signature` over `message` under the rules of this module.
    pub fn verify(
        &self,
        message: &SigningBytes,
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        let decoded = DecodedSignature::new(signature)?;
        let k = self.challenge(&decoded, message);
        if self.equation_holds(&decoded, &k) {
            Ok(())
        } else {
            Err(SignatureError::Invalid)
        }
    }

    pub(crate) fn point(&self) -> &EdwardsPoint {
        &self.point
    }

    /// Rule 3: `k = SHA-512(R_bytes ‖ A_bytes ‖ M) mod ℓ`.
    pub(crate) fn challenge(&self, signature: &DecodedSignature, message: &SigningBytes) -> Scalar {
        let mut hash = Sha512::new();
        hash.update(signature.r_bytes);
        hash.update(self.bytes);
        hash.update(message.as_bytes());
        Scalar::from_bytes_mod_order_wide(&hash.finalize().into())
    }

    /// Rule 4: `[8]([s]B − R − [k]A)` is the identity. `[s]B − [k]A` is
    /// one double-base multiplication, as in `verify_strict`.
    pub(crate) fn equation_holds(&self, signature: &DecodedSignature, k: &Scalar) -> bool {
        let sb_minus_ka =
            EdwardsPoint::vartime_double_scalar_mul_basepoint(k, &self.minus_point, &signature.s);
        (sb_minus_ka - signature.r).mul_by_cofactor().is_identity()
    }
}

impl fmt::Debug for PreparedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PreparedKey")
            .field(&self.public_key())
            .finish()
    }
}

/// A signature's `R` (rule 1) and `s` (rule 2), decoded.
#[derive(Clone, Copy)]
pub(crate) struct DecodedSignature {
    r_bytes: [u8; 32],
    pub(crate) r: EdwardsPoint,
    pub(crate) s: Scalar,
}

impl DecodedSignature {
    pub(crate) fn new(signature: &Signature) -> Result<DecodedSignature, SignatureError> {
        let (r_bytes, s_bytes) = split(signature.as_bytes());
        let s =
            Option::from(Scalar::from_canonical_bytes(s_bytes)).ok_or(SignatureError::Invalid)?;
        let r = decode_point(&r_bytes).ok_or(SignatureError::Invalid)?;
        Ok(DecodedSignature { r_bytes, r, s })
    }
}

/// Rule 1: the point whose encoding is `bytes`, non-canonical encodings
/// included.
fn decode_point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    CompressedEdwardsY(*bytes).decompress()
}

/// `R_bytes` and `s_bytes` of a signature.
fn split(bytes: &[u8; 64]) -> ([u8; 32], [u8; 32]) {
    let mut r = [0u8; 32];
    let mut s = [0u8; 32];
    let (r_half, s_half) = bytes.split_at(32);
    r.copy_from_slice(r_half);
    s.copy_from_slice(s_half);
    (r, s)
}

#[cfg(test)]
mod tests;
