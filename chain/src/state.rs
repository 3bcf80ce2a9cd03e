//! Accounts and the state root.
//!
//! # State root construction
//!
//! The state root commits to every account with a nonzero balance or nonce
//! through a lattice-based homomorphic multiset hash, LtHash16 (Bellare and
//! Micciancio 1997; the parameters of Lewi, Kim, Maykov and Weis, "Securing
//! Update Propagation with Homomorphic Hashing", 2019):
//!
//! 1. Each account is a leaf: `"PHALANX/ACCOUNT/v1"` ‖ address (32 bytes) ‖
//!    balance (u64 LE) ‖ nonce (u64 LE).
//! 2. A leaf's element is BLAKE3 of the leaf, extended (BLAKE3's XOF) to
//!    2048 bytes, read as 1024 little-endian u16 lanes.
//! 3. The accumulator is the lane-wise sum, modulo 2¹⁶, of the elements of
//!    all accounts. An account whose balance and nonce are both zero is not
//!    in the set (it is the same as an account never seen).
//! 4. The state root is `BLAKE3("PHALANX/STATE/v1" ‖ the 1024 lanes, LE)`.
//!
//! Because lane-wise addition is commutative and invertible, a block that
//! changes `k` accounts updates the accumulator with `k` subtractions (old
//! values) and `k` additions (new values): the cost is proportional to the
//! accounts the block touches, never to the number of accounts. Two nodes
//! with the same set of accounts have the same accumulator whatever order
//! the changes arrived in, so equal state means equal root.
//!
//! Finding two different account sets with the same accumulator reduces to
//! a short-vector problem in a lattice of dimension 1024 over 16-bit lanes,
//! estimated at about 200 bits of security by Lewi et al. What this root
//! does not give is a proof that one account has a given balance (that needs
//! a sparse merkle tree); light-client proofs are left for a later change.

use crate::types::{Address, Amount, Nonce};
use phalanx_crypto::Hash;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::OnceLock;

/// An account: its balance and the nonce its next transaction must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Account {
    pub balance: Amount,
    pub nonce: Nonce,
}

impl Account {
    /// True for the state of an account that was never used.
    pub fn is_empty(&self) -> bool {
        self.balance == Amount::ZERO && self.nonce == Nonce(0)
    }
}

const LANES: usize = 1024;
/// The encoded size of an accumulator.
pub const ACCUMULATOR_BYTES: usize = LANES * 2;

/// The LtHash16 accumulator over all accounts (see the module docs).
///
/// It keeps its root once computed, and every change forgets it: a block
/// that changes no account builds on an accumulator whose root is known,
/// so the 2 KiB of lanes are not hashed again (that was most of the cost
/// of building or executing an empty block).
#[derive(Clone)]
pub struct StateAccumulator {
    lanes: Box<[u16; LANES]>,
    root: OnceLock<Hash>,
}

impl Default for StateAccumulator {
    fn default() -> Self {
        StateAccumulator {
            lanes: Box::new([0; LANES]),
            root: OnceLock::new(),
        }
    }
}

/// Equal lanes, equal accumulators (and roots): the kept root is not
/// compared.
impl PartialEq for StateAccumulator {
    fn eq(&self, other: &Self) -> bool {
        self.lanes == other.lanes
    }
}

impl Eq for StateAccumulator {}

impl fmt::Debug for StateAccumulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateAccumulator(root {})", self.root())
    }
}

fn element(address: &Address, account: &Account) -> [u16; LANES] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"PHALANX/ACCOUNT/v1");
    hasher.update(address.as_bytes());
    hasher.update(&account.balance.0.to_le_bytes());
    hasher.update(&account.nonce.0.to_le_bytes());
    let mut bytes = [0u8; ACCUMULATOR_BYTES];
    hasher.finalize_xof().fill(&mut bytes);
    let mut lanes = [0u16; LANES];
    read_lanes(&mut lanes, &bytes);
    lanes
}

/// Reads little-endian u16 lanes from `bytes` (2 bytes a lane).
fn read_lanes(lanes: &mut [u16; LANES], bytes: &[u8]) {
    for (lane, pair) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
        if let &[lo, hi] = pair {
            *lane = u16::from_le_bytes([lo, hi]);
        }
    }
}

impl StateAccumulator {
    /// Adds an account's current value to the set (no-op for empty accounts).
    pub fn insert(&mut self, address: &Address, account: &Account) {
        if account.is_empty() {
            return;
        }
        let e = element(address, account);
        self.root = OnceLock::new();
        for (lane, x) in self.lanes.iter_mut().zip(e) {
            *lane = lane.wrapping_add(x);
        }
    }

    /// Removes an account's value, previously inserted, from the set.
    pub fn remove(&mut self, address: &Address, account: &Account) {
        if account.is_empty() {
            return;
        }
        let e = element(address, account);
        self.root = OnceLock::new();
        for (lane, x) in self.lanes.iter_mut().zip(e) {
            *lane = lane.wrapping_sub(x);
        }
    }

    /// Replaces `old` with `new` for one account.
    pub fn update(&mut self, address: &Address, old: &Account, new: &Account) {
        if old != new {
            self.remove(address, old);
            self.insert(address, new);
        }
    }

    /// The accumulator over `accounts`, from scratch.
    pub fn from_accounts<'a>(
        accounts: impl IntoIterator<Item = (&'a Address, &'a Account)>,
    ) -> Self {
        let mut acc = StateAccumulator::default();
        for (address, account) in accounts {
            acc.insert(address, account);
        }
        acc
    }

    /// The state root that block headers carry.
    pub fn root(&self) -> Hash {
        *self
            .root
            .get_or_init(|| Hash::digest_parts(&[b"PHALANX/STATE/v1", &self.to_bytes()]))
    }

    pub fn to_bytes(&self) -> [u8; ACCUMULATOR_BYTES] {
        let mut out = [0u8; ACCUMULATOR_BYTES];
        for (pair, lane) in out.chunks_exact_mut(2).zip(self.lanes.iter()) {
            pair.copy_from_slice(&lane.to_le_bytes());
        }
        out
    }

    /// Reads an accumulator written by [`StateAccumulator::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != ACCUMULATOR_BYTES {
            return None;
        }
        let mut acc = StateAccumulator::default();
        read_lanes(&mut acc.lanes, bytes);
        Some(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn acct(balance: u64, nonce: u64) -> Account {
        Account {
            balance: Amount(balance),
            nonce: Nonce(nonce),
        }
    }

    #[test]
    fn empty_accounts_are_not_in_the_set() {
        let mut acc = StateAccumulator::default();
        let empty_root = acc.root();
        acc.insert(&Address([1; 32]), &Account::default());
        assert_eq!(acc.root(), empty_root);
        acc.insert(&Address([1; 32]), &acct(1, 0));
        assert_ne!(acc.root(), empty_root);
        acc.update(&Address([1; 32]), &acct(1, 0), &Account::default());
        assert_eq!(acc.root(), empty_root);
    }

    /// The root is kept once computed, and every change (and a clone
    /// changed after) gives the root of its own lanes, never a kept one.
    #[test]
    fn a_kept_root_is_forgotten_by_every_change() {
        let fresh = |acc: &StateAccumulator| StateAccumulator::from_bytes(&acc.to_bytes()).unwrap();
        let (a, b) = (Address([4; 32]), Address([5; 32]));
        let mut acc = StateAccumulator::from_accounts([(&a, &acct(9, 1))]);
        let before = acc.root();
        let kept = acc.clone();
        acc.insert(&b, &acct(3, 0));
        assert_ne!(acc.root(), before);
        assert_eq!(acc.root(), fresh(&acc).root());
        acc.remove(&b, &acct(3, 0));
        assert_eq!(acc.root(), before);
        acc.update(&a, &acct(9, 1), &acct(8, 2));
        assert_eq!(acc.root(), fresh(&acc).root());
        assert_ne!(acc.root(), before);
        // The clone kept the old root, and still has the old lanes.
        assert_eq!(kept.root(), before);
        assert_eq!(kept, fresh(&kept));
    }

    #[test]
    fn bytes_round_trip() {
        let acc = StateAccumulator::from_accounts([(&Address([3; 32]), &acct(5, 2))]);
        assert_eq!(StateAccumulator::from_bytes(&acc.to_bytes()), Some(acc));
        assert_eq!(StateAccumulator::from_bytes(&[0; 10]), None);
    }

    proptest! {
        #![proptest_config(crate::test_seed::config())]
        #[test]
        fn incremental_updates_equal_recomputation_in_any_order(
            ops in proptest::collection::vec((0u8..8, 0u64..4, 0u64..3), 1..60)
        ) {
            let mut state = std::collections::BTreeMap::new();
            let mut acc = StateAccumulator::default();
            for (who, balance, nonce) in ops {
                let address = Address([who; 32]);
                let old = state.get(&address).copied().unwrap_or_default();
                let new = acct(balance, nonce);
                acc.update(&address, &old, &new);
                state.insert(address, new);
            }
            let scratch = StateAccumulator::from_accounts(state.iter());
            prop_assert_eq!(acc.root(), scratch.root());
            let reversed = StateAccumulator::from_accounts(state.iter().rev());
            prop_assert_eq!(reversed.root(), scratch.root());
        }

        #[test]
        fn different_states_have_different_roots(
            who in 0u8..8, balance in 1u64..1000, nonce in 0u64..5, delta in 1u64..5
        ) {
            let a = StateAccumulator::from_accounts([(&Address([who; 32]), &acct(balance, nonce))]);
            let b = StateAccumulator::from_accounts([(&Address([who; 32]), &acct(balance + delta, nonce))]);
            let c = StateAccumulator::from_accounts([(&Address([who; 32]), &acct(balance, nonce + delta))]);
            let d = StateAccumulator::from_accounts([(&Address([who.wrapping_add(1); 32]), &acct(balance, nonce))]);
            prop_assert_ne!(a.root(), b.root());
            prop_assert_ne!(a.root(), c.root());
            prop_assert_ne!(a.root(), d.root());
        }
    }
}
