//! Batch verification, and which signatures each verification path accepts.
//!
//! # The two paths
//!
//! **Single** ([`crate::PublicKey::verify`]) is ed25519-dalek's
//! `verify_strict`. It accepts a signature `(R, s)` by key `A` on message
//! `M` iff:
//!
//! 1. `s` is canonical (`s < ℓ`);
//! 2. `A` decodes to a curve point and is not of small order;
//! 3. `R` decodes to a curve point and is not of small order;
//! 4. `[s]B - [k]A`, compressed, equals the 32 bytes of `R` exactly, with
//!    `k = SHA-512(R ‖ A ‖ M) mod ℓ` (the cofactorless equation; comparing
//!    bytes also rejects non-canonical encodings of `R`).
//!
//! **Batch** ([`verify_batch`]) first applies rules 1 to 3 to every entry,
//! plus the canonical-`R` part of rule 4, then checks one random linear
//! combination of the entries' cofactorless equations,
//! `Σ zᵢ(Rᵢ + [kᵢ]Aᵢ - [sᵢ]B) = 0`, with 128-bit `zᵢ` that ed25519-dalek
//! derives from a transcript of the whole batch. If that holds, every entry
//! is reported valid; if not, every entry is checked with `verify_strict`
//! and the failing ones are reported, so an invalid entry is always named.
//!
//! # Where the two can differ, and what follows for the node
//!
//! If each entry satisfies its own equation, the combination holds: the
//! batch path never rejects a signature that `verify_strict` accepts.
//!
//! The converse does not hold exactly. Let `Dᵢ = Rᵢ + [kᵢ]Aᵢ - [sᵢ]B` be an
//! entry's defect. If `Dᵢ` has a component of prime order ℓ, the
//! combination catches it except with probability about 2⁻¹²⁸. But if `Rᵢ`
//! or `Aᵢ` carries a small torsion component (a mixed-order point, which
//! rule 3 does not exclude), `Dᵢ` can be a nonzero point of order 2, 4 or 8,
//! and `zᵢ·Dᵢ = 0` whenever `zᵢ` is a multiple of that order: with
//! probability up to 1/2 per try. Because the `zᵢ` are a deterministic
//! function of the batch, whoever builds such a signature can regrind it
//! until a chosen batch accepts it, while `verify_strict`, and any other
//! batch, rejects it. Only the holder of the secret key (or of a key it
//! chose with a torsion component) can build one: honest keys and honest
//! signatures never have such components, and nobody can forge a signature
//! for someone else's key this way.
//!
//! So an honest node that trusted the batch verdict could disagree with
//! another about a transaction that a sender crafted on purpose, which is
//! enough to split execution. Therefore:
//!
//! - **Consensus decisions use `verify_strict`**: whether a block's
//!   transactions are valid, executing them, and counting votes toward a
//!   certificate. The valid set is exactly `verify_strict`'s, on every node
//!   and every version of this code.
//! - **The batch path is an accelerator where a wrong "valid" costs only
//!   work**: mempool admission and gossip filtering. A transaction that the
//!   batch path admits but `verify_strict` rejects is dropped by the block
//!   builder and makes any block that contains it invalid, everywhere.

use crate::domain::SigningBytes;
use crate::keys::{PublicKey, Signature, SignatureError};
use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::VerifyingKey;

/// One signature to check.
#[derive(Debug, Clone, Copy)]
pub struct BatchEntry<'a> {
    pub message: &'a SigningBytes,
    pub key: &'a PublicKey,
    pub signature: &'a Signature,
}

/// Verifies many signatures at once. Returns the indices of the invalid
/// entries, in increasing order; an empty vector means all are valid. See
/// the module documentation for the exact rules and where the batch path
/// may be used.
pub fn verify_batch(entries: &[BatchEntry<'_>]) -> Vec<usize> {
    let mut invalid = Vec::new();
    let mut keys = Vec::with_capacity(entries.len());
    let mut messages = Vec::with_capacity(entries.len());
    let mut signatures = Vec::with_capacity(entries.len());
    let mut positions = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        match precheck(entry) {
            Ok(key) => {
                keys.push(key);
                messages.push(entry.message.as_bytes());
                signatures.push(entry.signature.to_dalek());
                positions.push(i);
            }
            Err(_) => invalid.push(i),
        }
    }
    if positions.is_empty() || ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
        return invalid;
    }
    for (i, entry) in entries.iter().enumerate() {
        if positions.binary_search(&i).is_ok()
            && entry.key.verify(entry.message, entry.signature).is_err()
        {
            invalid.push(i);
        }
    }
    invalid.sort_unstable();
    invalid
}

/// The per-entry rules that `verify_strict` enforces and dalek's batch
/// equation does not: key and `R` valid, canonical, not of small order,
/// and `s` canonical.
fn precheck(entry: &BatchEntry<'_>) -> Result<VerifyingKey, SignatureError> {
    let key = entry.key.to_dalek()?;
    let bytes = entry.signature.as_bytes();
    let mut r_bytes = [0u8; 32];
    let mut s_bytes = [0u8; 32];
    r_bytes.copy_from_slice(bytes.get(..32).ok_or(SignatureError::Invalid)?);
    s_bytes.copy_from_slice(bytes.get(32..).ok_or(SignatureError::Invalid)?);
    let r = CompressedEdwardsY(r_bytes)
        .decompress()
        .ok_or(SignatureError::Invalid)?;
    if r.is_small_order() || !y_is_canonical(&r_bytes) {
        return Err(SignatureError::Invalid);
    }
    let canonical_s: Option<curve25519_dalek::Scalar> =
        curve25519_dalek::Scalar::from_canonical_bytes(s_bytes).into();
    canonical_s.ok_or(SignatureError::Invalid)?;
    Ok(key)
}

/// True if the 255-bit `y` of a point encoding is below p = 2²⁵⁵ - 19.
/// (The other non-canonical encodings, x = 0 with the sign bit set, only
/// exist for y = ±1, which are small-order points and refused anyway.)
fn y_is_canonical(bytes: &[u8; 32]) -> bool {
    let (low, middle, high) = (bytes[0], &bytes[1..31], bytes[31] & 0x7f);
    !(high == 0x7f && middle.iter().all(|&b| b == 0xff) && low >= 0xed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChainId, Domain, Keypair};

    struct Fixture {
        messages: Vec<SigningBytes>,
        keys: Vec<PublicKey>,
        signatures: Vec<Signature>,
    }

    fn fixture(n: usize) -> Fixture {
        let chain = ChainId::new("batch-test").unwrap();
        let mut f = Fixture {
            messages: vec![],
            keys: vec![],
            signatures: vec![],
        };
        for i in 0..n {
            let kp = Keypair::from_seed(&[i as u8; 32]);
            let msg = Domain::Transaction.begin(&chain).u64_le(i as u64).finish();
            f.signatures.push(kp.sign(&msg));
            f.keys.push(kp.public());
            f.messages.push(msg);
        }
        f
    }

    fn entries(f: &Fixture) -> Vec<BatchEntry<'_>> {
        (0..f.messages.len())
            .map(|i| BatchEntry {
                message: &f.messages[i],
                key: &f.keys[i],
                signature: &f.signatures[i],
            })
            .collect()
    }

    #[test]
    fn all_valid() {
        let f = fixture(16);
        assert!(verify_batch(&entries(&f)).is_empty());
        assert!(verify_batch(&[]).is_empty());
    }

    #[test]
    fn reports_exactly_the_invalid_entries() {
        let mut f = fixture(16);
        f.signatures[3].0[10] ^= 1; // corrupt R
        f.signatures[7] = f.signatures[8]; // right form, wrong message
        f.keys[12] = f.keys[0]; // wrong key
        f.signatures[15].0[63] |= 0xf0; // non-canonical s
        assert_eq!(verify_batch(&entries(&f)), vec![3, 7, 12, 15]);
    }

    #[test]
    fn canonical_y_boundary() {
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        assert!(!y_is_canonical(&p));
        let mut below = p;
        below[0] = 0xec;
        assert!(y_is_canonical(&below));
        let mut sign_set = below;
        sign_set[31] |= 0x80;
        assert!(y_is_canonical(&sign_set));
        let mut above = p;
        above[0] = 0xff;
        above[31] = 0xff;
        assert!(!y_is_canonical(&above));
    }

    #[test]
    fn small_order_r_is_refused_like_verify_strict() {
        let mut f = fixture(4);
        // R = identity encoding: small order.
        let mut r = [0u8; 32];
        r[0] = 1;
        f.signatures[2].0[..32].copy_from_slice(&r);
        assert_eq!(verify_batch(&entries(&f)), vec![2]);
        assert!(f.keys[2].verify(&f.messages[2], &f.signatures[2]).is_err());
    }

    #[test]
    fn non_canonical_r_encoding_is_refused() {
        let mut f = fixture(2);
        // y = p + 1 (non-canonical encoding of the identity's y = 1): decodes,
        // but is not canonical.
        let mut r = [0xffu8; 32];
        r[0] = 0xee;
        r[31] = 0x7f;
        f.signatures[1].0[..32].copy_from_slice(&r);
        assert_eq!(verify_batch(&entries(&f)), vec![1]);
    }
}
