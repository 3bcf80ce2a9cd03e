//! Why a transaction or a block does not apply. Each variant names the rule
//! that failed and the values involved.

use crate::types::{Address, Amount, Height, Nonce};
use phalanx_crypto::{ChainId, Hash};

/// A transaction that does not apply to the current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("transaction is for chain {got}, this chain is {expected}")]
    WrongChain { expected: ChainId, got: ChainId },
    #[error("signature of transaction from {from} does not verify")]
    BadSignature { from: Address },
    #[error(
        "nonce mismatch for {from}: the account's next nonce is {expected}, the transaction has {got}"
    )]
    NonceMismatch {
        from: Address,
        expected: Nonce,
        got: Nonce,
    },
    #[error("account {from} has used every nonce")]
    NonceExhausted { from: Address },
    #[error("amount {amount} plus fee {fee} overflows a u64")]
    AmountOverflow { amount: Amount, fee: Amount },
    #[error("insufficient balance in {from}: has {balance}, needs {needed} (amount plus fee)")]
    InsufficientBalance {
        from: Address,
        balance: Amount,
        needed: Amount,
    },
    #[error("crediting {amount} to {account} would overflow its balance of {balance}")]
    BalanceOverflow {
        account: Address,
        balance: Amount,
        amount: Amount,
    },
}

/// A block that is invalid as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("block height is {got}, expected {expected} (parent height + 1)")]
    WrongHeight { expected: Height, got: Height },
    #[error("block parent is {got}, expected {expected}")]
    WrongParent { expected: Hash, got: Hash },
    #[error("block timestamp {got_ms} ms is before its parent's {parent_ms} ms")]
    TimestampBeforeParent { parent_ms: u64, got_ms: u64 },
    #[error("block has {count} transactions, the limit is {max}")]
    TooManyTransactions { count: usize, max: usize },
    #[error("transaction root in header is {header}, the transactions give {computed}")]
    TxRootMismatch { header: Hash, computed: Hash },
    #[error("state root in header is {header}, executing the block gives {computed}")]
    StateRootMismatch { header: Hash, computed: Hash },
    #[error("block claims a reward of {claimed}, the chain allows at most {allowed}")]
    RewardTooHigh { claimed: Amount, allowed: Amount },
    #[error("reward {reward} would overflow miner {miner}'s balance {balance}")]
    RewardOverflow {
        miner: Address,
        balance: Amount,
        reward: Amount,
    },
    #[error("transaction {index} ({hash}) does not apply: {error}")]
    Transaction {
        index: usize,
        hash: Hash,
        error: TxError,
    },
}
