//! What the protocols' unit tests share: a committee with known keys and
//! its genesis, and empty blocks on a parent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::committee::Committee;
use phalanx_chain::genesis::GenesisValidator;
use phalanx_chain::{
    Address, Block, BlockHeader, ChainId, ConsensusKind, Genesis, Height, Justification, merkle,
};
use phalanx_crypto::Keypair;

/// n validators (key seeds `first_seed`, `first_seed + 1`, ...) of a
/// `kind` chain `chain`: their keys, the committee and block 0.
pub fn committee(
    kind: ConsensusKind,
    chain: &str,
    n: usize,
    first_seed: u8,
) -> (Vec<Keypair>, Committee, Block) {
    let keys: Vec<Keypair> = (0..n)
        .map(|i| Keypair::from_seed(&[i as u8 + first_seed; 32]))
        .collect();
    let genesis = Genesis {
        chain_id: ChainId::new(chain).unwrap(),
        consensus: kind,
        genesis_time_ms: 0,
        validators: keys
            .iter()
            .enumerate()
            .map(|(i, k)| GenesisValidator {
                public_key: k.public(),
                address: format!("/ip4/127.0.0.1/tcp/{}", 9000 + i),
            })
            .collect(),
        pow: None,
        accounts: vec![],
    };
    let committee = Committee::from_genesis(&genesis).unwrap();
    (keys, committee, genesis.block())
}

/// A block with no transactions on `parent`: the state root carries over.
pub fn empty_child(
    parent: &Block,
    proposer: Address,
    ts: u64,
    justification: Justification,
) -> Block {
    Block::new(
        BlockHeader {
            height: Height(parent.header().height.0 + 1),
            parent: parent.hash(),
            tx_root: merkle::root(&[]),
            state_root: parent.header().state_root,
            timestamp_ms: ts.max(parent.header().timestamp_ms),
            proposer,
            justification,
        },
        vec![],
    )
}
