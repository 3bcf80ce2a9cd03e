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

use crate::domain::SigningBytes;
use crate::keys::{PublicKey, Signature, SignatureError};
use crate::zip215::PreparedKey;
use std::cell::RefCell;
use std::collections::HashMap;

struct Memo {
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

/// Runs `f` with [`PublicKey::verify`] remembering up to `capacity`
/// verdicts on this thread; returns what `f` returns and how many
/// verifications the memo answered.
pub fn with_memo<R>(capacity: usize, f: impl FnOnce() -> R) -> (R, u64) {
    MEMO.with(|m| {
        *m.borrow_mut() = Some(Memo {
            verdicts: HashMap::new(),
            keys: HashMap::new(),
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
    use crate::{ChainId, Domain, Keypair};

    #[test]
    fn the_memo_answers_repeats_with_the_same_verdicts_and_only_inside() {
        let key = Keypair::from_seed(&[1; 32]);
        let chain = ChainId::new("memo-test").unwrap();
        let message = Domain::HotStuffVote.begin(&chain).u64_le(1).finish();
        let other = Domain::HotStuffVote.begin(&chain).u64_le(2).finish();
        let good = key.sign(&message);
        let mut bad = good;
        bad.0[40] ^= 1;
        let ((), hits) = with_memo(2, || {
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
        let ((), hits) = with_memo(16, || {
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
        let ((), hits) = with_memo(16, || {
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
}
