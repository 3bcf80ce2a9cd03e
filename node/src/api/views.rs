//! The JSON the API answers with. These types are the API's contract
//! (docs/API.md), kept apart from the ledger's serde derives so that a
//! change to a storage encoding does not silently change the API.

use crate::net::PeerInfo;
use crate::shared::MiningStatus;
use phalanx_chain::pow::CompactTarget;
use phalanx_chain::{
    Address, Amount, BftCertificate, Block, BlockHeader, ChainId, ConsensusKind, Hash, Height,
    Justification, Nonce, Transaction, TxIndex, ValidatorIndex,
};
use phalanx_consensus::ChainTip;
use serde::Serialize;

/// `GET /status`.
#[derive(Debug, Serialize)]
pub struct StatusView {
    pub chain_id: ChainId,
    pub consensus: ConsensusKind,
    /// This node's validator index, or null.
    pub validator: Option<ValidatorIndex>,
    /// Height of the last committed block (null before genesis).
    pub height: Option<Height>,
    pub head_hash: Option<Hash>,
    pub finalized_height: Option<Height>,
    pub view: u64,
    /// What the protocol is doing in that view; null if this node runs no
    /// protocol instance.
    pub phase: Option<&'static str>,
    /// The current view's timer length in milliseconds; null for proof of
    /// work and on a node that runs no protocol instance.
    pub view_timeout_ms: Option<u64>,
    /// Connected peers.
    pub peers: usize,
    pub mempool_size: usize,
    pub mempool_bytes: usize,
    pub syncing: bool,
    pub sync_target: Option<Height>,
    /// Why consensus halted on a local fault; null while it runs.
    pub halted: Option<String>,
    /// This node's miner; null if it does not mine.
    pub mining: Option<MiningView>,
    /// Proof of work: the tips of the chains this node knows, best first
    /// (at most [`crate::shared::MAX_STATUS_TIPS`]); empty on BFT chains.
    pub tips: Vec<TipView>,
    /// Proof of work: the best tip's cumulative work (hex); null on BFT
    /// chains.
    pub work: Option<String>,
    /// Proof of work: the confirmations that make a block final (the
    /// genesis `confirmations`); null on BFT chains.
    pub confirmations: Option<u64>,
    /// What `GET /txs/{hash}` finds committed: `{"from": height}` or
    /// `"off"` (`node.tx_index`).
    pub tx_index: TxIndex,
}

/// A chain tip, in `GET /status`.
#[derive(Debug, Serialize)]
pub struct TipView {
    pub hash: Hash,
    pub height: Height,
    /// Cumulative work, big-endian hex without leading zeros.
    pub work: String,
    /// Blocks from the tip down to where it leaves the best chain (0 for
    /// the best tip).
    pub branch_len: u64,
    /// True for the best tip, the chain this node follows.
    pub active: bool,
}

impl TipView {
    pub fn of(tip: &ChainTip) -> TipView {
        TipView {
            hash: tip.hash,
            height: tip.height,
            work: tip.work.clone(),
            branch_len: tip.branch_len,
            active: tip.active,
        }
    }
}

/// A mining node's miner, in `GET /status`.
#[derive(Debug, Serialize)]
pub struct MiningView {
    /// The address its blocks pay.
    pub address: Address,
    pub threads: usize,
    /// Hashes per second, at most (0: unlimited).
    pub hashrate_limit: u64,
    /// Hashes per second, measured over the last status interval.
    pub hash_rate: u64,
    /// True while it has a block to mine.
    pub working: bool,
    /// Blocks still asked for by `POST /mine`, mined at full speed.
    pub on_demand: u64,
}

impl MiningView {
    pub fn of(status: &MiningStatus) -> MiningView {
        MiningView {
            address: status.address,
            threads: status.threads,
            hashrate_limit: status.hashrate_limit,
            hash_rate: status.hash_rate,
            working: status.working,
            on_demand: status.control.on_demand(),
        }
    }
}

/// A block: `GET /blocks/...`.
#[derive(Debug, Serialize)]
pub struct BlockView {
    pub hash: Hash,
    /// Whether the block is final (always, once committed, on BFT chains;
    /// after enough confirmations with proof of work).
    pub finalized: bool,
    pub header: HeaderView,
    pub tx_count: usize,
    /// Hashes, or full transactions with `?full=true`.
    pub transactions: TxList,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum TxList {
    Hashes(Vec<Hash>),
    Full(Vec<TxView>),
}

#[derive(Debug, Serialize)]
pub struct HeaderView {
    pub height: Height,
    pub parent: Hash,
    pub tx_root: Hash,
    pub state_root: Hash,
    pub timestamp_ms: u64,
    pub proposer: Address,
    pub justification: JustificationView,
}

/// Why the block may extend its parent, tagged by `kind`.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JustificationView {
    Genesis,
    /// A BFT block: its view and the certificate over its parent.
    Bft {
        view: u64,
        parent_cert: BftCertificate,
    },
    /// A proof-of-work block: its target (compact form), the reward its
    /// miner claims, and the nonce.
    ProofOfWork {
        target: CompactTarget,
        reward: Amount,
        nonce: u64,
    },
}

/// A transaction in the JSON form of docs/PROTOCOL.md, with its hash.
#[derive(Debug, Serialize)]
pub struct TxView {
    pub hash: Hash,
    #[serde(flatten)]
    pub tx: Transaction,
}

/// `GET /txs/{hash}`, tagged by `status`.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TxStatusView {
    /// In this node's mempool.
    Pending { hash: Hash },
    /// In a committed block that is not final yet (proof of work only).
    Committed(CommittedTx),
    /// In a final block.
    Finalized(CommittedTx),
}

/// Where a committed transaction is.
#[derive(Debug, Serialize)]
pub struct CommittedTx {
    pub hash: Hash,
    pub height: Height,
    /// Its position in the block's transactions.
    pub index: u32,
    pub block_hash: Hash,
    /// Its block and the blocks on top: head height - height + 1.
    pub confirmations: u64,
    /// Always true: a committed transaction is on this node's chain (one a
    /// reorganization took off is pending again, or unknown).
    pub on_best_chain: bool,
}

/// `POST /mine`.
#[derive(Debug, Serialize)]
pub struct MineView {
    /// Blocks the miner will now find at full speed (this request's and
    /// any still left from earlier ones, at most
    /// [`crate::miner::MAX_ON_DEMAND_BLOCKS`]).
    pub mining: u64,
    /// The blocks this request asked for.
    pub requested: u64,
}

/// `GET /accounts/{address}`.
#[derive(Debug, Serialize)]
pub struct AccountView {
    pub address: Address,
    pub balance: Amount,
    /// The nonce the account's next committed transaction must carry.
    pub nonce: Nonce,
    /// The nonce to give a new transaction: `nonce` advanced past the
    /// account's consecutive pending transactions in this node's mempool.
    pub pending_nonce: Nonce,
}

/// `POST /txs`.
#[derive(Debug, Serialize)]
pub struct SubmittedView {
    pub hash: Hash,
}

/// `POST /txs/batch`: a verdict for each transaction, in request order.
#[derive(Debug, Serialize)]
pub struct BatchView {
    /// Transactions admitted (those in `results` without `error`).
    pub accepted: usize,
    /// Transactions refused.
    pub rejected: usize,
    pub results: Vec<BatchItemView>,
}

/// One transaction of a batch: its hash (absent only if its JSON was not a
/// transaction), and for a refused one the error `POST /txs` would answer.
#[derive(Debug, Serialize)]
pub struct BatchItemView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<Hash>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ItemErrorView>,
}

/// Why a transaction of a batch was refused: the `code` and `message` of
/// the API's error shape.
#[derive(Debug, Serialize)]
pub struct ItemErrorView {
    pub code: &'static str,
    pub message: String,
}

/// `GET /mempool`.
#[derive(Debug, Serialize)]
pub struct MempoolView {
    pub size: usize,
    pub bytes: usize,
    /// The oldest pending transactions' hashes, at most `limit`.
    pub txs: Vec<Hash>,
}

/// `GET /peers`.
#[derive(Debug, Serialize)]
pub struct PeersView {
    pub connected: usize,
    pub peers: Vec<PeerInfo>,
}

impl HeaderView {
    pub fn of(header: &BlockHeader) -> HeaderView {
        let justification = match &header.justification {
            Justification::Genesis => JustificationView::Genesis,
            Justification::Bft { view, parent_cert } => JustificationView::Bft {
                view: *view,
                parent_cert: parent_cert.clone(),
            },
            Justification::ProofOfWork(seal) => JustificationView::ProofOfWork {
                target: seal.target,
                reward: seal.reward,
                nonce: seal.nonce,
            },
        };
        HeaderView {
            height: header.height,
            parent: header.parent,
            tx_root: header.tx_root,
            state_root: header.state_root,
            timestamp_ms: header.timestamp_ms,
            proposer: header.proposer,
            justification,
        }
    }
}

impl BlockView {
    pub fn of(block: &Block, finalized: bool, full: bool) -> BlockView {
        let transactions = if full {
            TxList::Full(
                block
                    .transactions
                    .iter()
                    .map(|tx| TxView {
                        hash: tx.hash(),
                        tx: tx.clone(),
                    })
                    .collect(),
            )
        } else {
            TxList::Hashes(block.tx_hashes())
        };
        BlockView {
            hash: block.hash(),
            finalized,
            header: HeaderView::of(block.header()),
            tx_count: block.transactions.len(),
            transactions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_chain::{PowSeal, ValidatorSignature};
    use phalanx_crypto::Signature;
    use serde_json::json;

    fn header(justification: Justification) -> BlockHeader {
        BlockHeader {
            height: Height(5),
            parent: Hash::ZERO,
            tx_root: Hash::ZERO,
            state_root: Hash::ZERO,
            timestamp_ms: 7,
            proposer: Address([1; 32]),
            justification,
        }
    }

    #[test]
    fn justifications_are_tagged_by_kind() {
        let pow = HeaderView::of(&header(Justification::ProofOfWork(PowSeal {
            target: CompactTarget(0x1d00ffff),
            reward: Amount(50),
            nonce: 12_345,
        })));
        assert_eq!(
            serde_json::to_value(&pow.justification).unwrap(),
            json!({ "kind": "proof_of_work", "target": "1d00ffff", "reward": 50, "nonce": 12345 })
        );
        let genesis = HeaderView::of(&header(Justification::Genesis));
        assert_eq!(
            serde_json::to_value(&genesis.justification).unwrap(),
            json!({ "kind": "genesis" })
        );
        let bft = HeaderView::of(&header(Justification::Bft {
            view: 9,
            parent_cert: BftCertificate {
                view: 8,
                block: Hash::ZERO,
                signatures: vec![ValidatorSignature {
                    validator: ValidatorIndex(2),
                    signature: Signature([0; 64]),
                }],
            },
        }));
        let value = serde_json::to_value(&bft.justification).unwrap();
        assert_eq!(value["kind"], "bft");
        assert_eq!(value["view"], 9);
        assert_eq!(value["parent_cert"]["view"], 8);
        assert_eq!(value["parent_cert"]["signatures"][0]["validator"], 2);
    }
}
