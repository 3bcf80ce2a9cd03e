//! ZIP 215 edge cases. Every case is judged four ways, which must agree:
//! by [`PublicKey::verify`], by [`PreparedKey::verify`], by
//! [`verify_batch`] as a batch of one, and by [`verify_batch`] with all the
//! cases of a test interleaved with honest signatures.

use super::*;
use crate::test_seed;
use crate::{BatchEntry, ChainId, Domain, Keypair, verify_batch};
use proptest::prelude::*;
use std::collections::BTreeSet;

/// ℓ = 2^252 + 27742317777372353535851937790883648493, little endian.
const L_BYTES: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// A signature to judge.
#[derive(Clone, Debug)]
struct Case {
    key: PublicKey,
    message: SigningBytes,
    signature: Signature,
}

impl Case {
    fn new(key: [u8; 32], message: &SigningBytes, r: [u8; 32], s: [u8; 32]) -> Case {
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&r);
        signature[32..].copy_from_slice(&s);
        Case {
            key: PublicKey(key),
            message: message.clone(),
            signature: Signature(signature),
        }
    }

    fn entry(&self) -> BatchEntry<'_> {
        BatchEntry {
            message: &self.message,
            key: &self.key,
            signature: &self.signature,
        }
    }

    /// What ed25519-dalek's `verify_strict`, the rule before ZIP 215, says.
    fn verify_strict(&self) -> bool {
        ed25519_dalek::VerifyingKey::from_bytes(&self.key.0).is_ok_and(|key| {
            let signature = ed25519_dalek::Signature::from_bytes(&self.signature.0);
            key.verify_strict(self.message.as_bytes(), &signature)
                .is_ok()
        })
    }
}

/// The verdicts on `cases` (true = valid), after checking that every way
/// of asking gives the same ones.
fn judge(cases: &[Case]) -> Vec<bool> {
    let single: Vec<bool> = cases
        .iter()
        .map(|c| c.key.verify(&c.message, &c.signature).is_ok())
        .collect();
    for (i, c) in cases.iter().enumerate() {
        let prepared = c
            .key
            .prepare()
            .is_ok_and(|key| key.verify(&c.message, &c.signature).is_ok());
        assert_eq!(prepared, single[i], "PreparedKey, case {i}: {c:?}");
        let alone = verify_batch(&[c.entry()]).is_empty();
        assert_eq!(alone, single[i], "batch of one, case {i}: {c:?}");
    }
    let invalid: Vec<usize> = (0..cases.len()).filter(|&i| !single[i]).collect();
    let entries: Vec<BatchEntry<'_>> = cases.iter().map(Case::entry).collect();
    assert_eq!(verify_batch(&entries), invalid, "one batch of all cases");

    // The same cases between honest signatures, at odd positions.
    let honest = honest_cases(cases.len() + 1);
    let mut mixed = Vec::new();
    let mut expected = Vec::new();
    for (i, h) in honest.iter().enumerate() {
        mixed.push(h.entry());
        if let Some(c) = cases.get(i) {
            if !single[i] {
                expected.push(mixed.len());
            }
            mixed.push(c.entry());
        }
    }
    assert_eq!(
        verify_batch(&mixed),
        expected,
        "mixed with honest signatures"
    );
    single
}

fn honest_cases(n: usize) -> Vec<Case> {
    let chain = ChainId::new("zip215-honest").unwrap();
    (0..n)
        .map(|i| {
            let keypair = Keypair::from_seed(&[(i % 251) as u8 + 1; 32]);
            let message = Domain::Transaction.begin(&chain).u64_le(i as u64).finish();
            Case {
                key: keypair.public(),
                signature: keypair.sign(&message),
                message,
            }
        })
        .collect()
}

fn message(i: u64) -> SigningBytes {
    Domain::Transaction
        .begin(&ChainId::new("zip215-edge").unwrap())
        .u64_le(i)
        .finish()
}

fn decode(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    CompressedEdwardsY(*bytes).decompress()
}

/// `[n]P` for the integer `n` given in little-endian bytes (not reduced
/// mod ℓ, unlike scalar multiplication by a `Scalar`).
fn times(n: &[u8; 32], p: &EdwardsPoint) -> EdwardsPoint {
    let mut acc = EdwardsPoint::default();
    for byte in n.iter().rev() {
        for bit in (0..8).rev() {
            acc = acc + acc;
            if (byte >> bit) & 1 == 1 {
                acc += p;
            }
        }
    }
    acc
}

/// The encoding of the field element `p + y` (y < 19, so it fits in 255
/// bits), with the sign bit `sign`.
fn y_plus_p(y: u8, sign: bool) -> [u8; 32] {
    let mut bytes = [0xff; 32];
    bytes[0] = 0xed + y;
    bytes[31] = if sign { 0xff } else { 0x7f };
    bytes
}

fn y_small(y: u8, sign: bool) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    bytes[0] = y;
    if sign {
        bytes[31] = 0x80;
    }
    bytes
}

/// A point of order 8, found from the curve: `[ℓ]P` for the first small
/// `y` whose point `P` has a torsion component of order 8 (`[ℓ]P` is that
/// component; it has order 8 iff `[4][ℓ]P` is not the identity).
fn order_8_point() -> EdwardsPoint {
    (2u8..=255)
        .filter_map(|y| decode(&y_small(y, false)))
        .map(|p| times(&L_BYTES, &p))
        .find(|t| !(t + t + t + t).is_identity())
        .unwrap()
}

/// The 8 points of small order, `[i]T` for `i = 0..8` and a point `T` of
/// order 8.
fn torsion() -> Vec<EdwardsPoint> {
    let t = order_8_point();
    let points: Vec<EdwardsPoint> = (0..8)
        .scan(EdwardsPoint::default(), |p, _| {
            let this = *p;
            *p += t;
            Some(this)
        })
        .collect();
    assert!(points.iter().all(EdwardsPoint::is_small_order));
    let distinct: BTreeSet<[u8; 32]> = points.iter().map(|p| p.compress().to_bytes()).collect();
    assert_eq!(distinct.len(), 8);
    points
}

/// Every encoding that decodes to a point of small order: the 8 canonical
/// ones, then the non-canonical ones in a fixed order. Found by trying
/// every candidate: the sign bit flipped on each canonical encoding, and
/// `y + p` with either sign for every `y < 19`.
fn small_order_encodings() -> (Vec<[u8; 32]>, Vec<[u8; 32]>) {
    let canonical: Vec<[u8; 32]> = torsion().iter().map(|p| p.compress().to_bytes()).collect();
    let mut candidates: Vec<[u8; 32]> = canonical
        .iter()
        .map(|e| {
            let mut flipped = *e;
            flipped[31] ^= 0x80;
            flipped
        })
        .collect();
    for y in 0..19 {
        candidates.push(y_plus_p(y, false));
        candidates.push(y_plus_p(y, true));
    }
    let non_canonical: Vec<[u8; 32]> = candidates
        .into_iter()
        .filter(|e| !canonical.contains(e))
        .filter(|e| decode(e).is_some_and(|p| p.is_small_order()))
        .collect();
    (canonical, non_canonical)
}

fn all_small_order_encodings() -> Vec<[u8; 32]> {
    let (canonical, non_canonical) = small_order_encodings();
    canonical.into_iter().chain(non_canonical).collect()
}

/// `[k]` of the signature scheme: SHA-512(R_bytes ‖ A_bytes ‖ M) mod ℓ,
/// computed here independently of the code under test.
fn k_of(r_bytes: &[u8; 32], a_bytes: &[u8; 32], message: &SigningBytes) -> Scalar {
    let digest: [u8; 64] = Sha512::new()
        .chain_update(r_bytes)
        .chain_update(a_bytes)
        .chain_update(message.as_bytes())
        .finalize()
        .into();
    Scalar::from_bytes_mod_order_wide(&digest)
}

/// `a + b` for 256-bit little-endian integers, or `None` on overflow.
fn add_le(a: &[u8; 32], b: &[u8; 32]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = sum as u8;
        carry = sum >> 8;
    }
    (carry == 0).then_some(out)
}

fn scalar(i: u64) -> Scalar {
    Scalar::from_bytes_mod_order_wide(&Sha512::digest(i.to_le_bytes()).into())
}

/// A signature made with secret scalars: key `A = [a]B + torsion_a`,
/// nonce point `R = [r]B + torsion_r`, `s = r + k·a`. It satisfies the
/// cofactored equation; the cofactorless one fails iff
/// `torsion_r + [k]torsion_a` is not the identity.
struct Crafted {
    a: Scalar,
    key: [u8; 32],
}

impl Crafted {
    fn new(seed: u64, torsion_a: &EdwardsPoint) -> Crafted {
        let a = scalar(seed);
        let key = (EdwardsPoint::mul_base(&a) + torsion_a)
            .compress()
            .to_bytes();
        Crafted { a, key }
    }

    /// Signs, grinding the nonce until the cofactorless equation fails
    /// (`Some(true)`) or holds (`Some(false)`); `None` takes the first.
    fn sign(
        &self,
        message: &SigningBytes,
        torsion_r: &EdwardsPoint,
        cofactorless_fails: Option<bool>,
    ) -> Case {
        let minus_a = -decode(&self.key).unwrap();
        for attempt in 0u64..256 {
            let r = scalar(attempt ^ 0x5eed_0000);
            let r_bytes = (EdwardsPoint::mul_base(&r) + torsion_r)
                .compress()
                .to_bytes();
            let k = k_of(&r_bytes, &self.key, message);
            let s = r + k * self.a;
            let defect = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &minus_a, &s)
                - decode(&r_bytes).unwrap();
            assert!(defect.mul_by_cofactor().is_identity());
            if cofactorless_fails.is_none_or(|fails| defect.is_identity() != fails) {
                return Case::new(self.key, message, r_bytes, s.to_bytes());
            }
        }
        panic!("no nonce gives cofactorless_fails = {cofactorless_fails:?}");
    }
}

#[test]
fn decompress_accepts_non_canonical_y_and_negative_zero() {
    // Rule 1 rests on curve25519-dalek 5's decompress: pin its behaviour.
    let mut decodable = 0;
    for y in 0..19u8 {
        for sign in [false, true] {
            let canonical = decode(&y_small(y, sign));
            let non_canonical = decode(&y_plus_p(y, sign));
            // y + p decodes exactly when y does, to the same point.
            assert_eq!(canonical.is_some(), non_canonical.is_some(), "y = {y}");
            if let (Some(c), Some(n)) = (canonical, non_canonical) {
                assert_eq!(c, n, "y = {y}");
                assert_ne!(n.compress().to_bytes(), y_plus_p(y, sign));
                decodable += 1;
            }
        }
    }
    // Of y = 0..18, these are on the curve (computed independently, in
    // Python); each with both signs, in both encodings.
    let on_curve: Vec<u8> = (0..19)
        .filter(|&y| decode(&y_small(y, false)).is_some())
        .collect();
    assert_eq!(on_curve, [0, 1, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18]);
    assert_eq!(decodable, 2 * on_curve.len());
    // 2^256 - 1: y = 2^255 - 1 ≡ 18, sign bit set.
    assert_eq!(decode(&[0xff; 32]), decode(&y_small(18, true)));
    // Negative zero: x = 0 with the sign bit set decodes to x = 0.
    let identity = decode(&y_small(1, false)).unwrap();
    assert!(identity.is_identity());
    assert_eq!(decode(&y_small(1, true)), Some(identity));
    let minus_one = [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ];
    let mut minus_one_negative = minus_one;
    minus_one_negative[31] |= 0x80;
    let order_2 = decode(&minus_one).unwrap();
    assert_eq!(decode(&minus_one_negative), Some(order_2));
    assert!((order_2 + order_2).is_identity() && !order_2.is_identity());
    // y = 2 is not on the curve, in either encoding.
    assert!(decode(&y_small(2, false)).is_none());
    assert!(decode(&y_plus_p(2, false)).is_none());
}

#[test]
fn there_are_14_small_order_encodings() {
    let (canonical, non_canonical) = small_order_encodings();
    assert_eq!(canonical.len(), 8);
    // y = 1 and y = -1 with the sign bit set (negative zero), and
    // y = p + 0, y = p + 1 with either sign.
    assert_eq!(
        non_canonical.len(),
        6,
        "{:?}",
        non_canonical.iter().map(hex::encode).collect::<Vec<_>>()
    );
    let expected: BTreeSet<[u8; 32]> = [
        y_small(1, true),
        y_plus_p(0, false),
        y_plus_p(0, true),
        y_plus_p(1, false),
        y_plus_p(1, true),
    ]
    .into_iter()
    .collect();
    let found: BTreeSet<[u8; 32]> = non_canonical.iter().copied().collect();
    assert!(found.is_superset(&expected));
    // The sixth is y = -1 (canonical y = p - 1) with the sign bit set.
    let rest: Vec<_> = found.difference(&expected).collect();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0][0], 0xec);
    assert_eq!(rest[0][31], 0xff);
}

#[test]
fn all_196_small_order_key_and_r_pairs_with_s_zero_are_valid() {
    let encodings = all_small_order_encodings();
    assert_eq!(encodings.len(), 14);
    let m = message(215);
    let mut cases = Vec::new();
    for a in &encodings {
        for r in &encodings {
            cases.push(Case::new(*a, &m, *r, [0; 32]));
        }
    }
    assert_eq!(cases.len(), 196);
    assert!(judge(&cases).iter().all(|&valid| valid));
    // verify_strict refused every one of them.
    assert!(cases.iter().all(|c| !c.verify_strict()));
}

#[test]
fn small_order_key_accepts_any_message_and_any_small_order_r() {
    // The consequence to know: a small-order key signs for anyone.
    let encodings = all_small_order_encodings();
    let cases: Vec<Case> = (0..14)
        .map(|i| Case::new(encodings[i], &message(i as u64), encodings[13 - i], [0; 32]))
        .collect();
    assert!(judge(&cases).iter().all(|&v| v));
    // But R must still be of small order, and s still matters.
    let mut bad = Vec::new();
    let honest_r = EdwardsPoint::mul_base(&scalar(1)).compress().to_bytes();
    bad.push(Case::new(encodings[0], &message(1), honest_r, [0; 32]));
    bad.push(Case::new(
        encodings[0],
        &message(1),
        encodings[1],
        scalar(2).to_bytes(),
    ));
    assert!(judge(&bad).iter().all(|&v| !v));
}

#[test]
fn mixed_order_keys_and_r_satisfying_only_the_cofactored_equation_are_valid() {
    let t = torsion();
    let identity = EdwardsPoint::default();
    let mut cases = Vec::new();
    for (seed, (torsion_a, torsion_r)) in [
        (t[1], identity), // mixed-order A, order 8 component
        (t[2], identity), // order 4
        (t[4], identity), // order 2
        (identity, t[1]), // mixed-order R
        (identity, t[6]),
        (t[3], t[5]), // both
    ]
    .into_iter()
    .enumerate()
    {
        let crafted = Crafted::new(seed as u64 + 100, &torsion_a);
        cases.push(crafted.sign(&message(seed as u64), &torsion_r, Some(true)));
    }
    assert!(judge(&cases).iter().all(|&v| v));
    // The old rule refused them: that was the disagreement.
    assert!(cases.iter().all(|c| !c.verify_strict()));
}

#[test]
fn valid_signatures_with_torsion_pass_the_batch_equation_itself() {
    // Not only the verdicts: the combination holds without the fallback
    // to single checks, so torsion cannot force the slow path. (Without
    // the cofactor in the batch equation the verdicts would still be
    // right, through the fallback, but this would fail.)
    let t = torsion();
    let encodings = all_small_order_encodings();
    let mut cases: Vec<Case> = (0..14)
        .map(|i| {
            Case::new(
                encodings[i],
                &message(i as u64),
                encodings[(i * 5) % 14],
                [0; 32],
            )
        })
        .collect();
    for i in 0..8 {
        let crafted = Crafted::new(500 + i as u64, &t[i]);
        cases.push(crafted.sign(&message(i as u64), &t[(i + 3) % 8], None));
    }
    cases.extend(honest_cases(4));
    // Keys used more than once share one point in the combination.
    let again = Keypair::from_seed(&[1; 32]);
    for i in 0..3 {
        let m = message(600 + i);
        cases.push(Case {
            key: again.public(),
            signature: again.sign(&m),
            message: m,
        });
    }
    cases.push(Case::new(encodings[0], &message(50), encodings[3], [0; 32]));
    let entries: Vec<BatchEntry<'_>> = cases.iter().map(Case::entry).collect();
    assert_eq!(judge(&cases), vec![true; cases.len()]);
    for _ in 0..8 {
        assert!(crate::batch::combination_holds(&entries));
    }
    // One invalid entry makes it fail.
    let mut bad = cases.clone();
    bad[16].message = message(9999); // a crafted signature, key not of small order
    let bad_entries: Vec<BatchEntry<'_>> = bad.iter().map(Case::entry).collect();
    assert!(!crate::batch::combination_holds(&bad_entries));
}

#[test]
fn mixed_order_signatures_that_satisfy_both_equations_are_valid() {
    // With a torsion component in A only, the cofactorless equation also
    // holds when 8 divides k: ground for here.
    let t = torsion();
    let crafted = Crafted::new(7, &t[1]);
    let case = crafted.sign(&message(7), &EdwardsPoint::default(), Some(false));
    assert_eq!(judge(std::slice::from_ref(&case)), vec![true]);
    assert!(case.verify_strict());
}

#[test]
fn mixed_order_signatures_failing_both_equations_are_invalid() {
    let t = torsion();
    let mut cases = Vec::new();
    for (seed, (torsion_a, torsion_r)) in [(t[1], t[0]), (t[0], t[3]), (t[5], t[2])]
        .into_iter()
        .enumerate()
    {
        let crafted = Crafted::new(seed as u64 + 200, &torsion_a);
        // Signed for one message, presented with another.
        let mut case = crafted.sign(&message(seed as u64), &torsion_r, None);
        case.message = message(seed as u64 + 1000);
        cases.push(case);
        // s off by one.
        let mut case = crafted.sign(&message(seed as u64), &torsion_r, None);
        let s = Scalar::from_canonical_bytes(case.signature.0[32..].try_into().unwrap()).unwrap();
        case.signature.0[32..].copy_from_slice((s + Scalar::ONE).as_bytes());
        cases.push(case);
    }
    assert!(judge(&cases).iter().all(|&v| !v));
    assert!(cases.iter().all(|c| !c.verify_strict()));
}

#[test]
fn defects_that_cancel_in_a_plain_sum_are_still_caught() {
    // s + 1 and s - 1 on two honest signatures: defects -B and +B. With
    // equal coefficients the batch equation would hold; with independent
    // random ones it fails, and each entry is named.
    let mut cases = honest_cases(2);
    let bump = |case: &mut Case, delta: Scalar| {
        let s = Scalar::from_canonical_bytes(case.signature.0[32..].try_into().unwrap()).unwrap();
        case.signature.0[32..].copy_from_slice((s + delta).as_bytes());
    };
    bump(&mut cases[0], Scalar::ONE);
    bump(&mut cases[1], -Scalar::ONE);
    let entries: Vec<BatchEntry<'_>> = cases.iter().map(Case::entry).collect();
    for _ in 0..16 {
        assert_eq!(verify_batch(&entries), vec![0, 1]);
    }
    assert_eq!(judge(&cases), vec![false, false]);
}

#[test]
fn non_canonical_s_is_invalid() {
    let honest = honest_cases(3);
    let mut cases = Vec::new();
    for h in &honest {
        assert!(h.key.verify(&h.message, &h.signature).is_ok());
        let s: [u8; 32] = h.signature.0[32..].try_into().unwrap();
        // s + ℓ satisfies the equation (it is s mod ℓ) but is not canonical.
        let mut plus_l = h.clone();
        plus_l.signature.0[32..].copy_from_slice(&add_le(&s, &L_BYTES).unwrap());
        cases.push(plus_l);
        // The high bits set.
        let mut high = h.clone();
        high.signature.0[63] |= 0xe0;
        cases.push(high);
        let mut top = h.clone();
        top.signature.0[63] |= 0x80;
        cases.push(top);
    }
    // s = ℓ exactly (≡ 0) and s = 2^256 - 1, with a small-order key and
    // R, for which s ≡ 0 would be valid.
    let encodings = all_small_order_encodings();
    cases.push(Case::new(encodings[0], &message(3), encodings[0], L_BYTES));
    cases.push(Case::new(
        encodings[0],
        &message(3),
        encodings[0],
        [0xff; 32],
    ));
    assert!(judge(&cases).iter().all(|&v| !v));
}

#[test]
fn keys_and_r_off_the_curve_are_invalid() {
    let honest = honest_cases(2);
    let off_curve = [
        y_small(2, false),
        y_small(2, true),
        y_plus_p(2, true),
        y_small(17, false),
    ];
    for bytes in &off_curve {
        assert!(decode(bytes).is_none(), "{}", hex::encode(bytes));
    }
    let mut cases = Vec::new();
    for bytes in off_curve {
        let mut bad_key = honest[0].clone();
        bad_key.key = PublicKey(bytes);
        cases.push(bad_key);
        let mut bad_r = honest[1].clone();
        bad_r.signature.0[..32].copy_from_slice(&bytes);
        cases.push(bad_r);
    }
    assert!(judge(&cases).iter().all(|&v| !v));
    assert_eq!(
        cases[0].key.verify(&cases[0].message, &cases[0].signature),
        Err(SignatureError::MalformedPublicKey)
    );
}

#[test]
fn k_covers_r_as_received_not_re_encoded() {
    // R of small order in a non-canonical encoding, with an honest key:
    // s = k·a. Valid iff k was computed over the bytes sent.
    let keypair_scalar = scalar(42);
    let key = EdwardsPoint::mul_base(&keypair_scalar)
        .compress()
        .to_bytes();
    let (canonical, non_canonical) = small_order_encodings();
    let mut valid = Vec::new();
    let mut invalid = Vec::new();
    for (i, r_bytes) in non_canonical.iter().enumerate() {
        let m = message(300 + i as u64);
        let s = k_of(r_bytes, &key, &m) * keypair_scalar;
        valid.push(Case::new(key, &m, *r_bytes, s.to_bytes()));
        let reencoded = decode(r_bytes).unwrap().compress().to_bytes();
        assert!(canonical.contains(&reencoded));
        let s = k_of(&reencoded, &key, &m) * keypair_scalar;
        invalid.push(Case::new(key, &m, *r_bytes, s.to_bytes()));
    }
    assert!(judge(&valid).iter().all(|&v| v));
    assert!(judge(&invalid).iter().all(|&v| !v));
}

/// The 12 test vectors of "Taming the many EdDSAs" (Chalkias, Garillot,
/// Nikolaenko, SSR 2020), from `cases.json` of
/// github.com/novifinancial/ed25519-speccheck at commit 6551933 (message,
/// public key, signature; messages are the raw bytes shown). The expected
/// verdicts are the row "Zebra" (ed25519-zebra, which implements ZIP 215)
/// of the results table in that repository's README, the paper's table:
/// V V V V V V X X X V V V.
const TAMING: [(&str, &str, &str, bool); 12] = [
    (
        "8c93255d71dcab10e8f379c26200f3c7bd5f09d9bc3068d3ef4edeb4853022b6",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a0000000000000000000000000000000000000000000000000000000000000000",
        true,
    ),
    (
        "9bd9f44f4dcc75bd531b56b2cd280b0bb38fc1cd6d1230e14861d861de092e79",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43a5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04",
        true,
    ),
    (
        "aebf3f2601a0c8c5d39cc7d8911642f740b78168218da8471772b35f9d35b9ab",
        "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa8c4bd45aecaca5b24fb97bc10ac27ac8751a7dfe1baff8b953ec9f5833ca260e",
        true,
    ),
    (
        "9bd9f44f4dcc75bd531b56b2cd280b0bb38fc1cd6d1230e14861d861de092e79",
        "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d",
        "9046a64750444938de19f227bb80485e92b83fdb4b6506c160484c016cc1852f87909e14428a7a1d62e9f22f3d3ad7802db02eb2e688b6c52fcd6648a98bd009",
        true,
    ),
    (
        "e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec4011eaccd55b53f56c",
        "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d",
        "160a1cb0dc9c0258cd0a7d23e94d8fa878bcb1925f2c64246b2dee1796bed5125ec6bc982a269b723e0668e540911a9a6a58921d6925e434ab10aa7940551a09",
        true,
    ),
    (
        "e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec4011eaccd55b53f56c",
        "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d",
        "21122a84e0b5fca4052f5b1235c80a537878b38f3142356b2c2384ebad4668b7e40bc836dac0f71076f9abe3a53f9c03c1ceeeddb658d0030494ace586687405",
        true,
    ),
    (
        "85e241a07d148b41e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec40",
        "442aad9f089ad9e14647b1ef9099a1ff4798d78589e66f28eca69c11f582a623",
        "e96f66be976d82e60150baecff9906684aebb1ef181f67a7189ac78ea23b6c0e547f7690a0e2ddcd04d87dbc3490dc19b3b3052f7ff0538cb68afb369ba3a514",
        false,
    ),
    (
        "85e241a07d148b41e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec40",
        "442aad9f089ad9e14647b1ef9099a1ff4798d78589e66f28eca69c11f582a623",
        "8ce5b96c8f26d0ab6c47958c9e68b937104cd36e13c33566acd2fe8d38aa19427e71f98a473474f2f13f06f97c20d58cc3f54b8bd0d272f42b695dd7e89a8c22",
        false,
    ),
    (
        "9bedc267423725d473888631ebf45988bad3db83851ee85c85e241a07d148b41",
        "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff03be9678ac102edcd92b0210bb34d7428d12ffc5df5f37e359941266a4e35f0f",
        false,
    ),
    (
        "9bedc267423725d473888631ebf45988bad3db83851ee85c85e241a07d148b41",
        "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffca8c5b64cd208982aa38d4936621a4775aa233aa0505711d8fdcfdaa943d4908",
        true,
    ),
    (
        "e96b7021eb39c1a163b6da4e3093dcd3f21387da4cc4572be588fafae23c155b",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "a9d55260f765261eb9b84e106f665e00b867287a761990d7135963ee0a7d59dca5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04",
        true,
    ),
    (
        "39a591f5321bbe07fd5a23dc2f39d025d74526615746727ceefd6e82ae65c06f",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "a9d55260f765261eb9b84e106f665e00b867287a761990d7135963ee0a7d59dca5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04",
        true,
    ),
];

#[test]
fn taming_the_many_eddsas_vectors_get_the_zip215_verdicts() {
    let cases: Vec<Case> = TAMING
        .iter()
        .map(|(m, a, sig, _)| Case {
            key: PublicKey(hex::decode(a).unwrap().try_into().unwrap()),
            message: SigningBytes::raw_for_tests(&hex::decode(m).unwrap()),
            signature: Signature(hex::decode(sig).unwrap().try_into().unwrap()),
        })
        .collect();
    let expected: Vec<bool> = TAMING.iter().map(|t| t.3).collect();
    assert_eq!(judge(&cases), expected);
    // The same vectors under verify_strict: the paper's "Dalek strict"
    // row, X X X V X X X X X X X X.
    let strict: Vec<bool> = cases.iter().map(Case::verify_strict).collect();
    let mut only_3 = vec![false; 12];
    only_3[3] = true;
    assert_eq!(strict, only_3);
}

/// One random entry of a mixed batch.
fn random_case(kind: u8, seed: u64, corrupt_at: usize, corrupt_with: u8) -> Case {
    let t = torsion();
    let encodings = all_small_order_encodings();
    let m = message(seed);
    match kind % 8 {
        0 => honest_cases((seed % 32) as usize + 1).pop().unwrap(),
        1 => {
            // An honest signature, key or message with one byte changed.
            let mut c = honest_cases((seed % 32) as usize + 1).pop().unwrap();
            let at = corrupt_at % 100;
            let change = corrupt_with.max(1);
            match at {
                0..64 => c.signature.0[at] ^= change,
                64..96 => c.key.0[at - 64] ^= change,
                _ => c.message = message(seed ^ u64::from(change)),
            }
            c
        }
        2 => Case::new(
            encodings[corrupt_at % 14],
            &m,
            encodings[usize::from(corrupt_with) % 14],
            [0; 32],
        ),
        3 => {
            Crafted::new(seed, &t[corrupt_at % 8]).sign(&m, &t[usize::from(corrupt_with) % 8], None)
        }
        4 => {
            // A crafted signature presented with another message.
            let mut c = Crafted::new(seed, &t[corrupt_at % 8]).sign(&m, &t[1], None);
            c.message = message(seed + 1);
            c
        }
        5 => {
            // A crafted signature with one byte changed.
            let mut c = Crafted::new(seed, &t[corrupt_at % 8]).sign(&m, &t[3], None);
            c.signature.0[corrupt_at % 64] ^= corrupt_with.max(1);
            c
        }
        6 => {
            // Small-order key, small-order R, s random (valid iff s = 0).
            let s = if corrupt_with.is_multiple_of(2) {
                [0; 32]
            } else {
                scalar(seed).to_bytes()
            };
            Case::new(
                encodings[corrupt_at % 14],
                &m,
                encodings[corrupt_at / 14 % 14],
                s,
            )
        }
        _ => {
            // An honest signature with s + ℓ.
            let mut c = honest_cases((seed % 32) as usize + 1).pop().unwrap();
            let s: [u8; 32] = c.signature.0[32..].try_into().unwrap();
            c.signature.0[32..].copy_from_slice(&add_le(&s, &L_BYTES).unwrap());
            c
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..test_seed::config() })]

    /// Honest signatures, corruptions and crafted edge cases, mixed at
    /// random: the batch names exactly the entries single verification
    /// refuses, and a batch of one agrees with single verification.
    #[test]
    fn single_and_batch_verdicts_agree_on_random_mixes(
        picks in proptest::collection::vec((any::<u8>(), 0u64..1000, any::<usize>(), any::<u8>()), 1..24)
    ) {
        let cases: Vec<Case> = picks
            .iter()
            .map(|&(kind, seed, at, with)| random_case(kind, seed, at, with))
            .collect();
        let single: Vec<bool> = cases
            .iter()
            .map(|c| c.key.verify(&c.message, &c.signature).is_ok())
            .collect();
        let invalid: Vec<usize> = (0..cases.len()).filter(|&i| !single[i]).collect();
        let entries: Vec<BatchEntry<'_>> = cases.iter().map(Case::entry).collect();
        prop_assert_eq!(verify_batch(&entries), invalid);
        for (c, &valid) in cases.iter().zip(&single) {
            prop_assert_eq!(verify_batch(&[c.entry()]).is_empty(), valid);
        }
    }
}

#[test]
fn the_random_mixes_contain_valid_and_invalid_entries_of_every_kind() {
    // Guards the property test above against testing nothing: each kind
    // of random entry yields both verdicts where it can.
    for kind in 0..8u8 {
        let verdicts: BTreeSet<bool> = (0..24u64)
            .map(|i| random_case(kind, i, (i * 7) as usize, (i * 13) as u8))
            .map(|c| c.key.verify(&c.message, &c.signature).is_ok())
            .collect();
        let expected: BTreeSet<bool> = match kind {
            0 | 2 | 3 => [true].into(),
            1 | 4 | 5 | 7 => [false].into(),
            _ => [false, true].into(),
        };
        assert_eq!(verdicts, expected, "kind {kind}");
    }
}

#[test]
fn honest_signatures_verify_in_every_batch_size() {
    let honest = honest_cases(130);
    for n in [1, 2, 3, 64, 130] {
        let entries: Vec<BatchEntry<'_>> = honest[..n].iter().map(Case::entry).collect();
        assert!(verify_batch(&entries).is_empty(), "n = {n}");
    }
}
