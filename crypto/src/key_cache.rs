//! Public keys decoded before, kept for the next signature by the same key.
//!
//! Decoding a key (rule 1 of [`crate::zip215`]) is a point decompression,
//! an exponentiation in the field that costs about as much as decoding the
//! signature's `R`. A node checks many signatures by the same senders and
//! validators, so [`prepared`] keeps the keys it decoded in a process-wide
//! cache of two generations of at most [`GENERATION`] keys each: when the
//! current generation is full it becomes the previous one and the one
//! before is dropped, and a key found in the previous generation moves to
//! the current one. Keys that do not decode are kept too (as failures).
//! Decoding is a function of the key's bytes alone, so the cache changes
//! no verdict, only how often the work is done.

use crate::keys::{PublicKey, SignatureError};
use crate::zip215::PreparedKey;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Keys in one generation, at most (two generations of about 360 bytes a
/// key: under 6 MiB in all).
pub const GENERATION: usize = 8_192;

type Decoded = Result<PreparedKey, SignatureError>;

#[derive(Default)]
struct Generations {
    current: HashMap<[u8; 32], Decoded>,
    previous: HashMap<[u8; 32], Decoded>,
}

impl Generations {
    fn get(&mut self, key: &[u8; 32]) -> Option<Decoded> {
        if let Some(found) = self.current.get(key) {
            return Some(*found);
        }
        let found = self.previous.remove(key)?;
        self.insert(*key, found);
        Some(found)
    }

    fn insert(&mut self, key: [u8; 32], decoded: Decoded) {
        if self.current.len() >= GENERATION {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, decoded);
    }

    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

fn cache() -> MutexGuard<'static, Generations> {
    static CACHE: OnceLock<Mutex<Generations>> = OnceLock::new();
    let mutex = CACHE.get_or_init(|| Mutex::new(Generations::default()));
    // The map is never left half-updated by a panic: keep using it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `key` decoded ([`PreparedKey::new`]), from the cache if it was decoded
/// before.
pub fn prepared(key: &PublicKey) -> Result<PreparedKey, SignatureError> {
    if let Some(found) = cache().get(key.as_bytes()) {
        return found;
    }
    // Decoded outside the lock; two threads may both decode a new key,
    // which is harmless.
    let decoded = PreparedKey::new(key);
    cache().insert(*key.as_bytes(), decoded);
    decoded
}

/// Keys cached now (both generations).
pub fn len() -> usize {
    cache().len()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Keypair;

    #[test]
    fn generations_are_bounded_and_a_hit_in_the_old_one_survives_the_turn() {
        let mut g = Generations::default();
        let decoded = |i: u64| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&i.to_le_bytes());
            let key = Keypair::from_seed(&seed).public();
            (*key.as_bytes(), PreparedKey::new(&key))
        };
        let first = decoded(0);
        g.insert(first.0, first.1);
        for i in 1..GENERATION as u64 {
            let (k, d) = decoded(i);
            g.insert(k, d);
        }
        assert_eq!(g.len(), GENERATION);
        // The current generation is full: the next insert turns it over.
        let (k, d) = decoded(GENERATION as u64);
        g.insert(k, d);
        assert_eq!((g.current.len(), g.previous.len()), (1, GENERATION));
        // Found in the previous generation: moved to the current one.
        assert!(g.get(&first.0).unwrap().is_ok());
        assert!(g.current.contains_key(&first.0));
        assert!(!g.previous.contains_key(&first.0));
        for i in GENERATION as u64 + 1..2 * GENERATION as u64 + 1 {
            let (k, d) = decoded(i);
            g.insert(k, d);
        }
        assert!(g.len() <= 2 * GENERATION);
        assert!(g.get(&decoded(1).0).is_none(), "dropped two turns later");
    }

    #[test]
    fn a_cached_key_gives_the_verdicts_of_a_fresh_one() {
        let key = Keypair::from_seed(&[41; 32]);
        let public = key.public();
        let message = crate::Domain::Transaction
            .begin(&crate::ChainId::new("cache").unwrap())
            .u64_le(1)
            .finish();
        let signature = key.sign(&message);
        for _ in 0..2 {
            let cached = prepared(&public).unwrap();
            assert!(cached.verify(&message, &signature).is_ok());
            let other = crate::Domain::Transaction
                .begin(&crate::ChainId::new("cache").unwrap())
                .u64_le(2)
                .finish();
            assert!(cached.verify(&other, &signature).is_err());
        }
        // A key that does not decode is refused, from the cache too.
        let bad = (0u8..=255)
            .map(|b| PublicKey([b; 32]))
            .find(|k| PreparedKey::new(k).is_err())
            .unwrap();
        for _ in 0..2 {
            assert!(prepared(&bad).is_err());
        }
    }
}
