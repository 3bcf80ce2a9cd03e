//! A map by hash bounded in entries, that forgets its oldest entry first:
//! the shape of the process-wide caches ([`crate::verified::VerifiedTxs`],
//! [`crate::speculative::SharedExecutions`]).

use phalanx_crypto::Hash;
use phalanx_crypto::maps::HashMap;
use std::collections::VecDeque;

#[derive(Debug)]
pub(crate) struct FifoMap<V> {
    capacity: usize,
    map: HashMap<Hash, V>,
    /// Insertion order, oldest first, for eviction.
    order: VecDeque<Hash>,
}

impl<V> FifoMap<V> {
    /// An empty map of at most `capacity` entries (at least one).
    pub(crate) fn new(capacity: usize) -> FifoMap<V> {
        FifoMap {
            capacity: capacity.max(1),
            map: HashMap::default(),
            order: VecDeque::new(),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn contains(&self, key: &Hash) -> bool {
        self.map.contains_key(key)
    }

    pub(crate) fn get(&self, key: &Hash) -> Option<&V> {
        self.map.get(key)
    }

    /// The eviction queue's length and allocated slots (tests check that
    /// it never grows past the capacity).
    #[cfg(test)]
    pub(crate) fn queue(&self) -> (usize, usize) {
        (self.order.len(), self.order.capacity())
    }

    /// Adds `key` unless it is held (a held entry keeps its value and its
    /// place), forgetting the oldest entries first if full.
    pub(crate) fn insert(&mut self, key: Hash, value: V) {
        if self.map.contains_key(&key) {
            return;
        }
        // Make room first, so neither collection ever holds more than the
        // capacity (and grows past it).
        while self.order.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => self.map.remove(&old),
                None => break,
            };
        }
        self.map.insert(key, value);
        self.order.push_back(key);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_goes_first_and_a_held_key_keeps_its_place() {
        let key = |i: u8| Hash::digest(&[i]);
        let mut m = FifoMap::new(2);
        m.insert(key(1), 'a');
        m.insert(key(2), 'b');
        m.insert(key(1), 'z');
        assert_eq!(m.get(&key(1)), Some(&'a'));
        m.insert(key(3), 'c');
        assert!(!m.contains(&key(1)));
        assert_eq!((m.len(), m.capacity()), (2, 2));
        assert_eq!(FifoMap::<()>::new(0).capacity(), 1);
    }
}
