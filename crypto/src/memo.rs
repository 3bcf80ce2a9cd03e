//! A memo of signature verdicts, switched on for one thread at a time: the
//! simulator's (which runs every replica of a network in one thread, so the
//! same vote is checked once as a vote, then again in every certificate
//! that carries it, on every replica).
//!
//! A verdict is a pure function of the key, the message and the signature,
//! so remembering it changes no outcome. A signature made here by
//! [`crate::Keypair::sign`] is remembered as valid when it is made, so the
//! first check of an honest replica's message costs a lookup too: an
//! ed25519 signature made honestly satisfies the cofactorless equation, so
//! ZIP 215's cofactored check accepts it, and the signer's own public key
//! always decodes. A corrupted or misattributed signature is another triple
//! and is checked for real. The memo is keyed by a BLAKE3
//! digest of all three (the key, the signature, then the message), holds at
//! most its capacity (it starts over when full), and exists only inside
//! [`with_memo`]: nothing in a node turns it on.
//!
//! # Ideal signatures
//!
//! With [`Signatures::Ideal`], [`crate::Keypair::sign`] on this thread
//! makes an *ideal* signature instead of an ed25519 one: 64 bytes of
//! BLAKE3 (in key derivation mode, under its own context string) of the
//! signer's public key and the message. Verification on the thread accepts
//! a signature that equals the ideal one for the key and message, and
//! checks anything else as ed25519 (so a corrupted, misattributed or
//! replayed signature is still refused). Within one simulated run this is
//! the ideal signature functionality protocol proofs assume: only
//! [`crate::Keypair::sign`] with the key produces a signature that
//! verifies, and it verifies exactly where the real one would. It is about
//! a hundred times cheaper than signing on the curve, which is what a
//! simulator that signs every vote of every replica spends most of its
//! time on. The simulator's users choose it (it is its default); real
//! ed25519 keeps being exercised by every test outside the simulator.
//!
//! An ideal signature is not an ed25519 signature: outside the thread
//! that made it (a node never turns the mode on) it does not verify.

use crate::domain::SigningBytes;
use crate::keys::{PublicKey, Signature, SignatureError};
use crate::maps::HashMap;
use crate::zip215::PreparedKey;
use std::cell::RefCell;

struct Memo {
    signatures: Signatures,
    verdicts: HashMap<[u8; 32], Result<(), SignatureError>>,
    /// Keys decoded before (a committee's few keys sign everything).
    keys: HashMap<PublicKey, Result<PreparedKey, SignatureError>>,
    capacity: usize,
    hits: u64,
}

thread_local! {
    static MEMO: RefCell<Option<Memo>> = const { RefCell::new(None) };
}

/// Removes the thread's memo when dropped (also when `f` panics).
struct Uninstall;

impl Drop for Uninstall {
    fn drop(&mut self) {
        MEMO.with(|m| *m.borrow_mut() = None);
    }
}

/// How [`crate::Keypair::sign`] signs inside [`with_memo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signatures {
    /// ed25519, as everywhere else.
    Real,
    /// Ideal signatures (see the module docs).
    Ideal,
}

/// Runs `f` with [`PublicKey::verify`] remembering up to `capacity`
/// verdicts on this thread, signing as `signatures` says; returns what `f`
/// returns and how many verifications the memo answered (an ideal
/// signature recognized counts as one).
pub fn with_memo<R>(capacity: usize, signatures: Signatures, f: impl FnOnce() -> R) -> (R, u64) {
    MEMO.with(|m| {
        *m.borrow_mut() = Some(Memo {
            signatures,
            verdicts: HashMap::default(),
            keys: HashMap::default(),
            capacity: capacity.max(1),
            hits: 0,
        })
    });
    let guard = Uninstall;
    let out = f();
    let hits = MEMO.with(|m| m.borrow().as_ref().map_or(0, |memo| memo.hits));
    drop(guard);
    (out, hits)
}

/// True if this thread signs ideal signatures (inside [`with_memo`] with
/// [`Signatures::Ideal`]).
pub fn ideal() -> bool {
    MEMO.with(|m| {
        m.borrow()
            .as_ref()
            .is_some_and(|memo| memo.signatures == Signatures::Ideal)
    })
}

/// The ideal signature of `message` by `key` (see the module docs).
fn ideal_signature(key: &PublicKey, message: &SigningBytes) -> Signature {
    use blake3::hazmat::{ContextKey, HasherExt, hash_derive_key_context};
    use std::sync::LazyLock;
    // The context string's key, hashed once rather than per signature:
    // the same hasher `new_derive_key` builds (hashing the context again
    // was about a third of an ideal signature's cost in the simulator).
    static CONTEXT: LazyLock<ContextKey> =
        LazyLock::new(|| hash_derive_key_context("phalanx simulator ideal signature v1"));
    let mut hasher = blake3::Hasher::new_from_context_key(&CONTEXT);
    hasher.update(key.as_bytes());
    hasher.update(message.as_bytes());
    let mut bytes = [0u8; 64];
    hasher.finalize_xof().fill(&mut bytes);
    Signature(bytes)
}

/// What [`crate::Keypair::sign`] returns on a thread that signs ideal
/// signatures; `None` elsewhere (sign for real).
pub(crate) fn sign_ideal(key: &PublicKey, message: &SigningBytes) -> Option<Signature> {
    ideal().then(|| ideal_signature(key, message))
}

/// On a thread that signs ideal signatures, true if `signature` is the
/// ideal one for `key` and `message` (counted as a memo hit); false
/// otherwise, and everywhere else.
pub(crate) fn is_ideal(key: &PublicKey, message: &SigningBytes, signature: &Signature) -> bool {
    if !ideal() || ideal_signature(key, message) != *signature {
        return false;
    }
    MEMO.with(|m| {
        if let Some(memo) = m.borrow_mut().as_mut() {
            memo.hits += 1;
        }
    });
    true
}

/// The triple's digest, the memo's key.
fn triple(key: &PublicKey, message: &SigningBytes, signature: &Signature) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(key.as_bytes());
    hasher.update(signature.as_bytes());
    hasher.update(message.as_bytes());
    hasher.finalize().into()
}

/// Remembers a signature [`crate::Keypair::sign`] has just made as valid,
/// if this thread has a memo (see the module docs for why that is sound).
pub(crate) fn signed(key: &PublicKey, message: &SigningBytes, signature: &Signature) {
    let installed = MEMO.with(|m| m.borrow().is_some());
    if !installed {
        return;
    }
    remember(triple(key, message, signature), Ok(()), None);
}

/// Records a verdict (and the key decoded for it), starting over when full.
fn remember(
    id: [u8; 32],
    verdict: Result<(), SignatureError>,
    key: Option<(PublicKey, Result<PreparedKey, SignatureError>)>,
) {
    MEMO.with(|m| {
        if let Some(memo) = m.borrow_mut().as_mut() {
            if memo.verdicts.len() >= memo.capacity {
                memo.verdicts.clear();
            }
            memo.verdicts.insert(id, verdict);
            if let Some((key, prepared)) = key {
                if memo.keys.len() >= memo.capacity {
                    memo.keys.clear();
                }
                memo.keys.insert(key, prepared);
            }
        }
    });
}

/// [`PublicKey::verify`]'s verdict: from the memo if this thread has one
/// and it has seen the triple (with the key decoded once), else computed.
pub(crate) fn verify(
    key: &PublicKey,
    message: &SigningBytes,
    signature: &Signature,
) -> Result<(), SignatureError> {
    let installed = MEMO.with(|m| m.borrow().is_some());
    if !installed {
        return crate::key_cache::prepared(key)?.verify(message, signature);
    }
    if is_ideal(key, message, signature) {
        return Ok(());
    }
    let id = triple(key, message, signature);
    let (known, prepared) = MEMO.with(|m| {
        let mut m = m.borrow_mut();
        let Some(memo) = m.as_mut() else {
            return (None, None);
        };
        if let Some(verdict) = memo.verdicts.get(&id).copied() {
            memo.hits += 1;
            return (Some(verdict), None);
        }
        (None, memo.keys.get(key).copied())
    });
    if let Some(verdict) = known {
        return verdict;
    }
    let prepared = prepared.unwrap_or_else(|| PreparedKey::new(key));
    let fresh = prepared.and_then(|p| p.verify(message, signature));
    remember(id, fresh, Some((*key, prepared)));
    fresh
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{BatchEntry, ChainId, Domain, Keypair};

    #[test]
    fn an_ideal_signature_is_blake3_in_key_derivation_mode_of_the_key_and_message() {
        let key = Keypair::from_seed(&[4; 32]);
        let chain = ChainId::new("memo-test").unwrap();
        let message = Domain::HotStuffVote.begin(&chain).u64_le(9).finish();
        let mut hasher = blake3::Hasher::new_derive_key("phalanx simulator ideal signature v1");
        hasher.update(key.public().as_bytes());
        hasher.update(message.as_bytes());
        let mut expected = [0u8; 64];
        hasher.finalize_xof().fill(&mut expected);
        assert_eq!(ideal_signature(&key.public(), &message).0, expected);
    }

    #[test]
    fn the_memo_answers_repeats_with_the_same_verdicts_and_only_inside() {
        let key = Keypair::from_seed(&[1; 32]);
        let chain = ChainId::new("memo-test").unwrap();
        let message = Domain::HotStuffVote.begin(&chain).u64_le(1).finish();
        let other = Domain::HotStuffVote.begin(&chain).u64_le(2).finish();
        let good = key.sign(&message);
        let mut bad = good;
        bad.0[40] ^= 1;
        let ((), hits) = with_memo(2, Signatures::Real, || {
            for _ in 0..3 {
                assert!(key.public().verify(&message, &good).is_ok());
                assert!(key.public().verify(&message, &bad).is_err());
                // The same signature over another message is another triple.
                assert!(key.public().verify(&other, &good).is_err());
            }
        });
        // Capacity 2 for three triples: it starts over before any repeat,
        // and the verdicts are still right.
        assert_eq!(hits, 0);
        let ((), hits) = with_memo(16, Signatures::Real, || {
            for _ in 0..3 {
                assert!(key.public().verify(&message, &good).is_ok());
                assert!(key.public().verify(&message, &bad).is_err());
            }
        });
        assert_eq!(hits, 4);
        // Gone outside.
        assert!(MEMO.with(|m| m.borrow().is_none()));
        assert!(key.public().verify(&message, &bad).is_err());
    }

    #[test]
    fn a_signature_made_inside_is_known_valid_and_a_tampered_one_is_checked() {
        let key = Keypair::from_seed(&[2; 32]);
        let other_key = Keypair::from_seed(&[3; 32]);
        let chain = ChainId::new("memo-test").unwrap();
        let message = Domain::HotStuffVote.begin(&chain).u64_le(7).finish();
        let other = Domain::HotStuffVote.begin(&chain).u64_le(8).finish();
        let ((), hits) = with_memo(16, Signatures::Real, || {
            let good = key.sign(&message);
            assert!(key.public().verify(&message, &good).is_ok());
            let mut bad = good;
            bad.0[3] ^= 1;
            assert!(key.public().verify(&message, &bad).is_err());
            // The same signature under another key or over another
            // message: other triples, checked for real.
            assert!(other_key.public().verify(&message, &good).is_err());
            assert!(key.public().verify(&other, &good).is_err());
        });
        // Only the honest signature was answered by the memo.
        assert_eq!(hits, 1);
        // Outside, signing records nothing and verifying still works.
        let good = key.sign(&message);
        assert!(key.public().verify(&message, &good).is_ok());
        assert!(MEMO.with(|m| m.borrow().is_none()));
    }

    #[test]
    fn ideal_signatures_verify_only_for_their_key_and_message_and_only_inside() {
        let key = Keypair::from_seed(&[4; 32]);
        let other_key = Keypair::from_seed(&[5; 32]);
        let chain = ChainId::new("memo-test").unwrap();
        let message = Domain::HotStuffVote.begin(&chain).u64_le(9).finish();
        let other = Domain::HotStuffVote.begin(&chain).u64_le(10).finish();
        let real = key.sign(&message);
        let (ideal, hits) = with_memo(16, Signatures::Ideal, || {
            assert!(super::ideal());
            let ideal = key.sign(&message);
            assert_ne!(ideal, real, "not an ed25519 signature");
            assert!(key.public().verify(&message, &ideal).is_ok());
            // A real signature still verifies in the mode.
            assert!(key.public().verify(&message, &real).is_ok());
            let mut bad = ideal;
            bad.0[63] ^= 1;
            assert!(key.public().verify(&message, &bad).is_err());
            assert!(other_key.public().verify(&message, &ideal).is_err());
            assert!(key.public().verify(&other, &ideal).is_err());
            // Batches agree with single verification.
            let entries = [
                BatchEntry {
                    message: &message,
                    key: &key.public(),
                    signature: &ideal,
                },
                BatchEntry {
                    message: &message,
                    key: &key.public(),
                    signature: &bad,
                },
                BatchEntry {
                    message: &message,
                    key: &key.public(),
                    signature: &real,
                },
                BatchEntry {
                    message: &other,
                    key: &key.public(),
                    signature: &ideal,
                },
                BatchEntry {
                    message: &message,
                    key: &other_key.public(),
                    signature: &ideal,
                },
            ];
            assert_eq!(crate::verify_batch(&entries), vec![1, 3, 4]);
            ideal
        });
        assert!(hits >= 2, "ideal signatures recognized: {hits}");
        // Outside the mode (and in a node) an ideal signature is nothing.
        assert!(!super::ideal());
        assert!(key.public().verify(&message, &ideal).is_err());
        let entry = BatchEntry {
            message: &message,
            key: &key.public(),
            signature: &ideal,
        };
        assert_eq!(crate::verify_batch(&[entry]), vec![0]);
        let ((), _) = with_memo(16, Signatures::Real, || {
            assert!(!super::ideal());
            assert_eq!(key.sign(&message), real);
            assert!(key.public().verify(&message, &ideal).is_err());
        });
    }
}
