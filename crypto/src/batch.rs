//! Batch verification, and why it accepts exactly the signatures that
//! single verification accepts.
//!
//! # The rule
//!
//! Both paths apply the ZIP 215 rule of [`crate::zip215`] to a signature
//! `(R_bytes, s_bytes)` by key `A_bytes` on message `M`:
//!
//! 1. `A_bytes` and `R_bytes` decode to curve points `A` and `R`
//!    (non-canonical encodings and small-order points accepted);
//! 2. `s` is canonical (`s < ℓ`);
//! 3. `k = SHA-512(R_bytes ‖ A_bytes ‖ M) mod ℓ`;
//! 4. `[8]D` is the identity, where `D = R + [k]A − [s]B` is the
//!    signature's *defect* (the cofactored equation).
//!
//! **Single** ([`crate::PublicKey::verify`], [`crate::PreparedKey::verify`])
//! checks rules 1 to 4 for one signature. **Batch** ([`verify_batch`])
//! checks rules 1 and 2 for every entry with the same functions (an entry
//! that fails them is reported invalid), computes each `kᵢ` with the same
//! function on the same bytes, and then checks one random linear
//! combination of the equations of rule 4:
//!
//! ```text
//! [8]( −(Σ zᵢsᵢ)B + Σ zᵢRᵢ + Σ (zᵢkᵢ)Aᵢ ) = [8] Σ zᵢDᵢ = Σ zᵢ[8]Dᵢ  is the identity,
//! ```
//!
//! with independent, uniformly random 128-bit `zᵢ` (entries by the same
//! key share one point `A` whose coefficient is the sum of their `zᵢkᵢ`;
//! that is the same sum). If it holds, every entry that passed rules 1
//! and 2 is reported valid. If not, each of them is checked alone (rule 4
//! with its already decoded points), and exactly those that fail are
//! reported.
//!
//! # Single and batch accept the same set
//!
//! Let `Eᵢ = [8]Dᵢ`. The curve group has order `8ℓ` with `ℓ` prime, so the
//! order of any point divides `8ℓ` and `Eᵢ`, having order dividing `ℓ`,
//! lies in the subgroup `G` of prime order `ℓ`: the cofactor has removed
//! every torsion component. Single verification accepts entry `i` iff
//! `Eᵢ = 0`.
//!
//! - *Every entry valid alone* (`Eᵢ = 0` for all `i`): `Σ zᵢEᵢ = 0` for any
//!   `zᵢ`, so the batch accepts, deterministically.
//! - *Some entry `j` invalid alone* (`Eⱼ ≠ 0`): `Eⱼ` generates `G`, so for
//!   any fixed values of the other `zᵢ` the sum vanishes for exactly one
//!   residue of `zⱼ` mod `ℓ`. `zⱼ` is uniform on `[0, 2¹²⁸)` and
//!   `2¹²⁸ < ℓ`, so at most one of its values is that residue: the batch
//!   equation holds with probability at most 2⁻¹²⁸, whatever the
//!   signatures are and whoever chose them. Otherwise the fallback checks
//!   every entry alone, which is the single rule itself.
//!
//! So the verdicts of [`verify_batch`] are those of single verification,
//! entry for entry, except with probability at most 2⁻¹²⁸ per batch that
//! contains an invalid signature, and then only in one direction (an
//! invalid entry reported valid); a valid entry is never reported invalid.
//!
//! Without the cofactor this fails: a defect with a torsion component of
//! order 2, 4 or 8 vanishes under `zᵢ` whenever `zᵢ` is a multiple of that
//! order, with probability up to 1/2, which is why the cofactorless
//! `verify_strict` and ed25519-dalek's batch equation, used before, could
//! disagree on signatures built with a small-order component.
//!
//! # Where the `zᵢ` come from
//!
//! From the operating system's CSPRNG (`getrandom`), drawn after the batch
//! is fixed, fresh for every call. The bound above needs the `zᵢ` to be
//! unpredictable to whoever chose the signatures; fresh randomness gives
//! that outright, while coefficients derived from a hash of the batch
//! would let an attacker try batches offline, each one a 2⁻¹²⁸ chance but
//! as many as he can afford. If the CSPRNG fails, every entry is checked
//! alone: slower, same verdicts.
//!
//! # Where each path is used
//!
//! Since both paths decide the same set, either may decide anything,
//! including whether a block's transactions are valid: a node that checks
//! a block's signatures in one batch reaches the verdict of one that
//! checks them one by one. Today the mempool admits transactions checked
//! in batches (`POST /txs/batch`, gossip), single submissions and
//! consensus messages are checked one at a time, and block execution
//! checks each transaction alone; moving block validation to batches is
//! a matter of speed, not of agreement.

use crate::domain::SigningBytes;
use crate::keys::{PublicKey, Signature};
use crate::zip215::{DecodedSignature, PreparedKey};
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use std::collections::HashMap;
use std::collections::hash_map::Entry;

/// One signature to check.
#[derive(Debug, Clone, Copy)]
pub struct BatchEntry<'a> {
    pub message: &'a SigningBytes,
    pub key: &'a PublicKey,
    pub signature: &'a Signature,
}

/// Verifies many signatures at once under the rule of [`crate::zip215`].
/// Returns the indices of the invalid entries, in increasing order; an
/// empty vector means all are valid. The verdicts are those of
/// [`PublicKey::verify`] (see the module documentation for the argument;
/// on a thread that signs ideal signatures, [`crate::memo`], an entry
/// carrying the ideal signature is valid, as it is for single
/// verification there).
pub fn verify_batch(entries: &[BatchEntry<'_>]) -> Vec<usize> {
    let mut batch = Batch::default();
    let mut invalid = Vec::new();
    let ideal = crate::memo::ideal();
    for (index, entry) in entries.iter().enumerate() {
        if ideal && crate::memo::is_ideal(entry.key, entry.message, entry.signature) {
            continue;
        }
        if batch.push(index, entry).is_none() {
            invalid.push(index);
        }
    }
    if batch.pending.is_empty() || batch.combination_holds() {
        return invalid;
    }
    invalid.extend(batch.failing_alone());
    invalid.sort_unstable();
    invalid
}

/// Whether the batch equation alone (no fallback) holds for `entries`,
/// all of which must pass rules 1 and 2: lets tests tell a verdict of the
/// combination from one of the single checks behind it.
#[cfg(test)]
pub(crate) fn combination_holds(entries: &[BatchEntry<'_>]) -> bool {
    let mut batch = Batch::default();
    for (index, entry) in entries.iter().enumerate() {
        assert!(
            batch.push(index, entry).is_some(),
            "entry {index} fails rule 1 or 2"
        );
    }
    batch.combination_holds()
}

/// The entries that passed rules 1 and 2, with their keys decoded once.
#[derive(Default)]
struct Batch {
    keys: Vec<PreparedKey>,
    /// Key bytes to their slot in `keys`, or `None` if they do not decode.
    slots: HashMap<[u8; 32], Option<usize>>,
    pending: Vec<Pending>,
}

/// One entry that passed rules 1 and 2, with its `k` (rule 3).
struct Pending {
    index: usize,
    key: usize,
    signature: DecodedSignature,
    k: Scalar,
}

impl Batch {
    /// Decodes `entry` (rules 1 to 3); `None` if it fails rule 1 or 2.
    fn push(&mut self, index: usize, entry: &BatchEntry<'_>) -> Option<()> {
        let signature = DecodedSignature::new(entry.signature).ok()?;
        let key = self.slot(entry.key)?;
        let k = self.keys.get(key)?.challenge(&signature, entry.message);
        self.pending.push(Pending {
            index,
            key,
            signature,
            k,
        });
        Some(())
    }

    fn slot(&mut self, key: &PublicKey) -> Option<usize> {
        match self.slots.entry(key.0) {
            Entry::Occupied(slot) => *slot.get(),
            Entry::Vacant(vacant) => {
                let slot = crate::key_cache::prepared(key).ok().map(|prepared| {
                    self.keys.push(prepared);
                    self.keys.len() - 1
                });
                *vacant.insert(slot)
            }
        }
    }

    /// Rule 4 for all pending entries at once:
    /// `[8](−(Σ zᵢsᵢ)B + Σ zᵢRᵢ + Σ (zᵢkᵢ)Aᵢ)` is the identity. False if
    /// the randomness for the `zᵢ` is unavailable.
    fn combination_holds(&self) -> bool {
        let Some(z) = random_coefficients(self.pending.len()) else {
            tracing::warn!("no randomness for batch verification; checking signatures one by one");
            return false;
        };
        let mut b_coefficient = Scalar::ZERO;
        let mut a_coefficients = vec![Scalar::ZERO; self.keys.len()];
        for (entry, z) in self.pending.iter().zip(&z) {
            b_coefficient -= z * entry.signature.s;
            if let Some(a) = a_coefficients.get_mut(entry.key) {
                *a += z * entry.k;
            }
        }
        let scalars = std::iter::once(&b_coefficient)
            .chain(&a_coefficients)
            .chain(&z);
        let points = std::iter::once(&ED25519_BASEPOINT_POINT)
            .chain(self.keys.iter().map(PreparedKey::point))
            .chain(self.pending.iter().map(|entry| &entry.signature.r));
        EdwardsPoint::vartime_multiscalar_mul(scalars, points)
            .mul_by_cofactor()
            .is_identity()
    }

    /// The indices of the pending entries that fail rule 4 alone.
    fn failing_alone(&self) -> Vec<usize> {
        self.pending
            .iter()
            .filter(|entry| {
                !self
                    .keys
                    .get(entry.key)
                    .is_some_and(|key| key.equation_holds(&entry.signature, &entry.k))
            })
            .map(|entry| entry.index)
            .collect()
    }
}

/// `n` independent uniform 128-bit scalars from the operating system's
/// CSPRNG, or `None` if it fails.
fn random_coefficients(n: usize) -> Option<Vec<Scalar>> {
    let mut bytes = vec![0u8; n.checked_mul(16)?];
    getrandom::fill(&mut bytes).ok()?;
    Some(
        bytes
            .chunks_exact(16)
            .map(|chunk| {
                let mut z = [0u8; 16];
                z.copy_from_slice(chunk);
                Scalar::from(u128::from_le_bytes(z))
            })
            .collect(),
    )
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
    fn entries_by_one_key_share_its_point_and_keep_their_verdicts() {
        let chain = ChainId::new("batch-test").unwrap();
        let kp = Keypair::from_seed(&[9; 32]);
        let key = kp.public();
        let messages: Vec<SigningBytes> = (0..8u64)
            .map(|i| Domain::Transaction.begin(&chain).u64_le(i).finish())
            .collect();
        let mut signatures: Vec<Signature> = messages.iter().map(|m| kp.sign(m)).collect();
        let entries = |signatures: &[Signature]| -> Vec<usize> {
            let batch: Vec<BatchEntry<'_>> = messages
                .iter()
                .zip(signatures)
                .map(|(message, signature)| BatchEntry {
                    message,
                    key: &key,
                    signature,
                })
                .collect();
            verify_batch(&batch)
        };
        assert!(entries(&signatures).is_empty());
        signatures.swap(2, 5);
        assert_eq!(entries(&signatures), vec![2, 5]);
    }

    #[test]
    fn malformed_keys_and_signatures_are_named_without_spoiling_the_rest() {
        let mut f = fixture(6);
        let mut y2 = [0u8; 32];
        y2[0] = 2; // y = 2 is not on the curve
        f.keys[1] = PublicKey(y2);
        f.keys[4] = PublicKey(y2); // the same malformed key twice
        f.signatures[2].0[..32].copy_from_slice(&y2); // R off the curve
        f.signatures[3].0[63] = 0x10; // s ≥ ℓ
        assert_eq!(verify_batch(&entries(&f)), vec![1, 2, 3, 4]);
        for i in 0..6 {
            let alone = f.keys[i].verify(&f.messages[i], &f.signatures[i]);
            assert_eq!(alone.is_ok(), [0, 5].contains(&i), "entry {i}: {alone:?}");
        }
    }

    #[test]
    fn random_coefficients_are_128_bit_and_fresh() {
        let a = random_coefficients(64).unwrap();
        let b = random_coefficients(64).unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        for z in &a {
            assert_eq!(&z.as_bytes()[16..], &[0u8; 16]);
        }
        assert!(random_coefficients(0).unwrap().is_empty());
    }
}
