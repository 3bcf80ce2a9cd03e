//! The transaction merkle tree: RFC 9162 (Certificate Transparency v2)
//! section 2.1, with BLAKE3 as the hash.
//!
//! - The leaves are the transactions' hashes, in block order.
//! - Empty tree: `BLAKE3()` (BLAKE3 of no bytes).
//! - One leaf `d`: `BLAKE3(0x00 ‖ d)`.
//! - `n > 1` leaves: let `k` be the largest power of two smaller than `n`;
//!   the root is `BLAKE3(0x01 ‖ MTH(D[0..k]) ‖ MTH(D[k..n]))`.
//!
//! An odd node is never duplicated (Bitcoin's tree duplicates the last node
//! of an odd level, which lets two different lists share a root); with the
//! split at a power of two, every list of leaves has its own root, and leaf
//! and node inputs cannot be confused thanks to their prefixes.
//!
//! An inclusion proof is RFC 9162's audit path: the sibling hashes from the
//! leaf up to the root.

use phalanx_crypto::Hash;
use serde::{Deserialize, Serialize};

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// The hash of a leaf node.
pub fn leaf_hash(leaf: &Hash) -> Hash {
    Hash::digest_parts(&[&[LEAF_PREFIX], leaf.as_bytes()])
}

/// The hash of an inner node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Hash::digest_parts(&[&[NODE_PREFIX], left.as_bytes(), right.as_bytes()])
}

/// The root over `leaves`.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => Hash::digest(b""),
        [leaf] => leaf_hash(leaf),
        _ => {
            let (left, right) = leaves.split_at(split_point(leaves.len()));
            node_hash(&root(left), &root(right))
        }
    }
}

/// The largest power of two smaller than `n` (for `n >= 2`).
fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// Proof that a leaf sits at `index` in a tree of `leaf_count` leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub index: u64,
    pub leaf_count: u64,
    /// Sibling hashes, from the leaf's level up to the root's children.
    pub path: Vec<Hash>,
}

/// The inclusion proof for `leaves[index]`, or `None` if out of range.
pub fn prove(leaves: &[Hash], index: usize) -> Option<InclusionProof> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    audit_path(leaves, index, &mut path);
    Some(InclusionProof {
        index: index as u64,
        leaf_count: leaves.len() as u64,
        path,
    })
}

// RFC 9162 2.1.3.1: PATH(m, D[n]).
fn audit_path(leaves: &[Hash], index: usize, path: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let (left, right) = leaves.split_at(split_point(leaves.len()));
    if index < left.len() {
        audit_path(left, index, path);
        path.push(root(right));
    } else {
        audit_path(right, index - left.len(), path);
        path.push(root(left));
    }
}

impl InclusionProof {
    /// True if this proof shows `leaf` at `self.index` under `root`
    /// (RFC 9162 2.1.3.2).
    pub fn verify(&self, leaf: &Hash, root: &Hash) -> bool {
        if self.index >= self.leaf_count {
            return false;
        }
        let mut f_n = self.index;
        let mut s_n = self.leaf_count - 1;
        let mut r = leaf_hash(leaf);
        for p in &self.path {
            if s_n == 0 {
                return false;
            }
            if f_n & 1 == 1 || f_n == s_n {
                r = node_hash(p, &r);
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            } else {
                r = node_hash(&r, p);
            }
            f_n >>= 1;
            s_n >>= 1;
        }
        s_n == 0 && r == *root
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| Hash::digest(&(i as u64).to_le_bytes()))
            .collect()
    }

    #[test]
    fn small_trees_have_the_documented_shape() {
        let l = leaves(3);
        assert_eq!(root(&[]), Hash::digest(b""));
        assert_eq!(root(&l[..1]), leaf_hash(&l[0]));
        assert_eq!(
            root(&l[..2]),
            node_hash(&leaf_hash(&l[0]), &leaf_hash(&l[1]))
        );
        // Three leaves split 2 + 1: the odd leaf is not duplicated.
        assert_eq!(
            root(&l),
            node_hash(
                &node_hash(&leaf_hash(&l[0]), &leaf_hash(&l[1])),
                &leaf_hash(&l[2])
            )
        );
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(1025), 1024);
    }

    #[test]
    fn duplicating_the_last_leaf_changes_the_root() {
        let mut l = leaves(3);
        let r3 = root(&l);
        l.push(l[2]);
        assert_ne!(root(&l), r3);
    }

    #[test]
    fn every_proof_verifies_for_every_size_up_to_40() {
        for n in 1..=40 {
            let l = leaves(n);
            let r = root(&l);
            for i in 0..n {
                let proof = prove(&l, i).unwrap();
                assert!(proof.verify(&l[i], &r), "n={n} i={i}");
                for j in 0..n {
                    if l[j] != l[i] {
                        assert!(!proof.verify(&l[j], &r), "n={n} i={i} j={j}");
                    }
                }
            }
            assert!(prove(&l, n).is_none());
        }
    }

    proptest! {
        #![proptest_config(crate::test_seed::config())]
        #[test]
        fn root_changes_with_order_and_content(
            n in 2usize..64, a in 0usize..64, b in 0usize..64, byte in 0usize..32
        ) {
            let l = leaves(n);
            let (a, b) = (a % n, b % n);
            let r = root(&l);
            if a != b {
                let mut swapped = l.clone();
                swapped.swap(a, b);
                prop_assert_ne!(root(&swapped), r);
            }
            let mut changed = l.clone();
            changed[a].0[byte] ^= 1;
            prop_assert_ne!(root(&changed), r);
            let mut shorter = l.clone();
            shorter.pop();
            prop_assert_ne!(root(&shorter), r);
        }

        #[test]
        fn proofs_verify_only_for_their_leaf_position_and_root(
            n in 1usize..200, i in 0usize..200, tweak in 0usize..32
        ) {
            let l = leaves(n);
            let i = i % n;
            let r = root(&l);
            let proof = prove(&l, i).unwrap();
            prop_assert!(proof.verify(&l[i], &r));
            let mut other_leaf = l[i];
            other_leaf.0[tweak] ^= 0x80;
            prop_assert!(!proof.verify(&other_leaf, &r));
            let mut other_root = r;
            other_root.0[tweak] ^= 0x80;
            prop_assert!(!proof.verify(&l[i], &other_root));
            if n > 1 {
                let moved = InclusionProof { index: ((i + 1) % n) as u64, ..proof.clone() };
                prop_assert!(!moved.verify(&l[i], &r));
                let mut bent = proof.clone();
                bent.path[0].0[tweak] ^= 1;
                prop_assert!(!bent.verify(&l[i], &r));
                let mut short = proof.clone();
                short.path.pop();
                prop_assert!(!short.verify(&l[i], &r));
            }
            let mut long = proof;
            long.path.push(r);
            prop_assert!(!long.verify(&l[i], &r));
        }
    }
}
