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
//! **Batch** ([`verify_batch`]) first applies rules 1 and 2 to every entry,
//! and refuses any `R` whose encoding is non-canonical or one of the ten
//! encodings of small-order points (rule 3 and the encoding part of rule 4,
//! checked on the bytes); an `R` that is not on the curve makes the batch
//! fail below. Then it checks one random linear combination of the
//! entries' cofactorless equations,
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
    // R's encoding must be canonical and not a small-order point. Checking
    // bytes spares decompressing R here (dalek's batch decompresses it, and
    // an R off the curve fails the batch, which then names it).
    if !y_is_canonical(&r_bytes) || SMALL_ORDER_ENCODINGS.contains(&r_bytes) {
        return Err(SignatureError::Invalid);
    }
    let canonical_s: Option<curve25519_dalek::Scalar> =
        curve25519_dalek::Scalar::from_canonical_bytes(s_bytes).into();
    canonical_s.ok_or(SignatureError::Invalid)?;
    Ok(key)
}

/// True if the 255-bit `y` of a point encoding is below p = 2²⁵⁵ - 19.
fn y_is_canonical(bytes: &[u8; 32]) -> bool {
    let (low, middle, high) = (bytes[0], &bytes[1..31], bytes[31] & 0x7f);
    !(high == 0x7f && middle.iter().all(|&b| b == 0xff) && low >= 0xed)
}

/// Every encoding with a canonical `y` that decodes to a point of small
/// order: the canonical encodings of the 8 points of order 1, 2, 4 and 8,
/// and the two with x = 0 and the sign bit set (y = 1 and y = -1). The
/// tests derive this list from the curve.
const SMALL_ORDER_ENCODINGS: [[u8; 32]; 10] = [
    hex32("0100000000000000000000000000000000000000000000000000000000000000"),
    hex32("0100000000000000000000000000000000000000000000000000000000000080"),
    hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
    hex32("0000000000000000000000000000000000000000000000000000000000000000"),
    hex32("0000000000000000000000000000000000000000000000000000000000000080"),
    hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
    hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
];

// Evaluated only at compile time: a bad literal is a build error.
#[allow(clippy::indexing_slicing)]
const fn hex32(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not lowercase hex"),
        }
    }
    let s = s.as_bytes();
    assert!(s.len() == 64);
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = nibble(s[2 * i]) << 4 | nibble(s[2 * i + 1]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChainId, Domain, Keypair};
    use curve25519_dalek::edwards::CompressedEdwardsY;

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
    fn small_order_list_is_exactly_the_small_order_encodings() {
        use curve25519_dalek::edwards::EdwardsPoint;
        use curve25519_dalek::traits::Identity;
        // A point of order 8 generates all 8 small-order points.
        let t = CompressedEdwardsY(SMALL_ORDER_ENCODINGS[6])
            .decompress()
            .unwrap();
        let mut canonical = std::collections::BTreeSet::new();
        let mut p = EdwardsPoint::identity();
        for _ in 0..8 {
            assert!(p.is_small_order());
            canonical.insert(p.compress().to_bytes());
            p += t;
        }
        assert_eq!(p, EdwardsPoint::identity());
        assert_eq!(canonical.len(), 8, "t has order 8");
        for encoding in SMALL_ORDER_ENCODINGS {
            let point = CompressedEdwardsY(encoding).decompress().unwrap();
            assert!(point.is_small_order(), "{}", hex::encode(encoding));
            assert!(y_is_canonical(&encoding));
            let is_canonical = point.compress().to_bytes() == encoding;
            assert!(is_canonical == canonical.contains(&encoding));
        }
        // The two non-canonical ones are x = 0 with the sign bit set.
        let extra: Vec<_> = SMALL_ORDER_ENCODINGS
            .iter()
            .filter(|e| !canonical.contains(*e))
            .collect();
        assert_eq!(extra.len(), 2);
        for e in extra {
            let mut cleared = *e;
            cleared[31] &= 0x7f;
            assert!(canonical.contains(&cleared));
        }
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
