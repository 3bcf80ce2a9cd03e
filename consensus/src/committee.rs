//! The validator committee.

use crate::hotstuff::LeaderRule;
use crate::types::View;
use phalanx_chain::{ChainId, Genesis, Hash, ValidatorIndex};
use phalanx_crypto::PublicKey;
use std::collections::HashMap;

/// The validators of a BFT chain, in genesis order, with the chain's id
/// and genesis block hash (the root every replica starts from).
#[derive(Debug, Clone)]
pub struct Committee {
    chain_id: ChainId,
    genesis_block: Hash,
    validators: Vec<PublicKey>,
    index: HashMap<PublicKey, ValidatorIndex>,
    /// Negative control only; see [`Committee::with_unsafe_quorum`].
    unsafe_quorum: Option<usize>,
    /// How HotStuff picks leaders (PBFT's primary is always
    /// [`Committee::leader`], round-robin).
    leader_rule: LeaderRule,
}

/// Why a committee could not be formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitteeError {
    #[error("a committee needs at least one validator")]
    Empty,
    #[error("{count} validators do not fit a u16 index")]
    TooLarge { count: usize },
    #[error("validator {index} appears twice")]
    Duplicate { index: usize },
}

impl Committee {
    pub fn new(
        chain_id: ChainId,
        genesis_block: Hash,
        validators: Vec<PublicKey>,
    ) -> Result<Committee, CommitteeError> {
        if validators.is_empty() {
            return Err(CommitteeError::Empty);
        }
        let mut index = HashMap::new();
        for (i, key) in validators.iter().enumerate() {
            let idx = u16::try_from(i).map_err(|_| CommitteeError::TooLarge {
                count: validators.len(),
            })?;
            if index.insert(*key, ValidatorIndex(idx)).is_some() {
                return Err(CommitteeError::Duplicate { index: i });
            }
        }
        Ok(Committee {
            chain_id,
            genesis_block,
            validators,
            index,
            unsafe_quorum: None,
            leader_rule: LeaderRule::default(),
        })
    }

    /// The committee of a BFT genesis.
    pub fn from_genesis(genesis: &Genesis) -> Result<Committee, CommitteeError> {
        Committee::new(
            genesis.chain_id.clone(),
            genesis.block().hash(),
            genesis.validators.iter().map(|v| v.public_key).collect(),
        )
    }

    pub fn chain_id(&self) -> &ChainId {
        &self.chain_id
    }

    /// The hash of block 0.
    pub fn genesis_block(&self) -> Hash {
        self.genesis_block
    }

    /// n.
    pub fn size(&self) -> usize {
        self.validators.len()
    }

    /// f = floor((n - 1) / 3), the faults the committee tolerates.
    pub fn max_faulty(&self) -> usize {
        (self.size() - 1) / 3
    }

    /// n - f distinct signers.
    pub fn quorum(&self) -> usize {
        self.unsafe_quorum
            .unwrap_or_else(|| self.size() - self.max_faulty())
    }

    /// A negative control for simulators: a committee whose certificates
    /// need only `quorum` signers (at least 1), for every replica that uses
    /// it and for checking certificates. Below a real quorum two quorums
    /// no longer share an honest validator, so both sides of a partition
    /// commit: a checker can be shown to catch it. Never for a real chain.
    pub fn with_unsafe_quorum(mut self, quorum: usize) -> Committee {
        self.unsafe_quorum = Some(quorum.max(1));
        self
    }

    /// The committee with HotStuff leaders picked by `rule`. Every
    /// validator of a chain must use the same rule: proposals from any
    /// other leader are refused.
    pub fn with_leader_rule(mut self, rule: LeaderRule) -> Committee {
        self.leader_rule = rule;
        self
    }

    /// How HotStuff picks leaders ([`crate::hotstuff::leader`]).
    pub fn leader_rule(&self) -> LeaderRule {
        self.leader_rule
    }

    /// f + 1: at least one honest signer among them.
    pub fn validity_threshold(&self) -> usize {
        self.max_faulty() + 1
    }

    /// Leaders rotate round-robin by view: PBFT's primary, and HotStuff's
    /// leader under [`LeaderRule::RoundRobin`] (reputation uses it for
    /// the first views, and after a broken chain from another start).
    pub fn leader(&self, view: View) -> ValidatorIndex {
        let n = self.size() as u64;
        ValidatorIndex((view.0 % n) as u16)
    }

    pub fn key(&self, index: ValidatorIndex) -> Option<&PublicKey> {
        self.validators.get(usize::from(index.0))
    }

    pub fn index_of(&self, key: &PublicKey) -> Option<ValidatorIndex> {
        self.index.get(key).copied()
    }

    /// Every validator's index.
    pub fn members(&self) -> impl Iterator<Item = ValidatorIndex> + '_ {
        (0..self.validators.len()).map(|i| ValidatorIndex(i as u16))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_crypto::Keypair;

    fn committee(n: usize) -> Committee {
        let keys = (0..n)
            .map(|i| Keypair::from_seed(&[i as u8 + 1; 32]).public())
            .collect();
        Committee::new(ChainId::new("c").unwrap(), Hash::ZERO, keys).unwrap()
    }

    #[test]
    fn thresholds() {
        for (n, f, q) in [
            (1, 0, 1),
            (3, 0, 3),
            (4, 1, 3),
            (5, 1, 4),
            (7, 2, 5),
            (10, 3, 7),
        ] {
            let c = committee(n);
            assert_eq!((c.max_faulty(), c.quorum()), (f, q), "n = {n}");
            // Two quorums always share an honest validator.
            assert!(2 * c.quorum() > n + c.max_faulty());
        }
    }

    #[test]
    fn leaders_rotate_and_keys_index() {
        let c = committee(4);
        let leaders: Vec<u16> = (0..6).map(|v| c.leader(View(v)).0).collect();
        assert_eq!(leaders, [0, 1, 2, 3, 0, 1]);
        let k2 = *c.key(ValidatorIndex(2)).unwrap();
        assert_eq!(c.index_of(&k2), Some(ValidatorIndex(2)));
        assert_eq!(c.key(ValidatorIndex(4)), None);
        let dup = vec![k2, k2];
        assert_eq!(
            Committee::new(ChainId::new("c").unwrap(), Hash::ZERO, dup).unwrap_err(),
            CommitteeError::Duplicate { index: 1 }
        );
    }
}
