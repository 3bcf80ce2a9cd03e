//! Execution: whether a transaction or a block applies to a state, and what
//! it changes.
//!
//! A transaction applies only if (in this order) its chain id is this
//! chain's, its signature verifies (ZIP 215), its nonce equals the sender's
//! nonce, amount + fee does not overflow, and the sender's balance covers
//! amount + fee. Applying it takes amount + fee from the sender and
//! increments its nonce, gives amount to the recipient, and gives fee to the
//! block's proposer. A block applies only if every transaction in it does,
//! in order; one that doesn't makes the whole block invalid. After its
//! transactions, a proof-of-work block credits its miner (the proposer)
//! with the reward its seal claims, which may not exceed the chain's
//! [`Rules::block_reward`].
//!
//! Signatures are checked before the transactions are applied: those of
//! transactions in a [`VerifiedTxs`] set (checked when they were admitted
//! to this node's mempool) are taken as valid, and the others are verified
//! in one batch, whose verdicts are exactly the single check's (ZIP 215 in
//! both paths: see `phalanx_crypto::batch`).

use crate::MAX_BLOCK_TXS;
use crate::block::{Block, BlockHeader, Justification};
use crate::error::{BlockError, TxError};
use crate::genesis::Genesis;
use crate::merkle;
use crate::state::{Account, StateAccumulator};
use crate::store::StoreError;
use crate::tx::Transaction;
use crate::types::{Address, Amount, Height};
use crate::verified::VerifiedTxs;
use phalanx_crypto::{ChainId, Hash};
use std::collections::BTreeMap;

/// The chain-wide rules execution needs besides the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub chain_id: ChainId,
    /// The most new coins a block's miner may claim (proof of work; zero
    /// for committee chains).
    pub block_reward: Amount,
}

impl Rules {
    /// A chain without block rewards.
    pub fn new(chain_id: ChainId) -> Rules {
        Rules {
            chain_id,
            block_reward: Amount::ZERO,
        }
    }

    /// The rules of `genesis`'s chain.
    pub fn of(genesis: &Genesis) -> Rules {
        Rules {
            chain_id: genesis.chain_id.clone(),
            block_reward: genesis
                .pow
                .as_ref()
                .map_or(Amount::ZERO, |p| p.block_reward),
        }
    }
}

/// Read access to committed account state.
pub trait StateView {
    /// The account at `address` (empty if never used).
    fn account(&self, address: &Address) -> Result<Account, StoreError>;
}

impl StateView for BTreeMap<Address, Account> {
    fn account(&self, address: &Address) -> Result<Account, StoreError> {
        Ok(self.get(address).copied().unwrap_or_default())
    }
}

/// Why a block could not be executed: the block is invalid, or reading
/// state failed (a local fault, not the block's).
#[derive(Debug, thiserror::Error)]
pub enum ExecutionError {
    #[error("invalid block: {0}")]
    Invalid(#[from] BlockError),
    #[error("reading state failed: {0}")]
    Storage(#[from] StoreError),
}

/// What executing a block changes: the new value of every account it
/// touched, and the accumulator and root after it. The root is computed
/// once, when the changes are made ([`StateChanges::new`]), so the root
/// and the accumulator always agree and no reader hashes the accumulator
/// again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChanges {
    pub accounts: BTreeMap<Address, Account>,
    accumulator: StateAccumulator,
    state_root: Hash,
}

impl StateChanges {
    /// The changes that leave `accounts` with these values and the state
    /// accumulator at `accumulator`.
    pub fn new(accounts: BTreeMap<Address, Account>, accumulator: StateAccumulator) -> Self {
        let state_root = accumulator.root();
        StateChanges {
            accounts,
            accumulator,
            state_root,
        }
    }

    /// The state accumulator after the block.
    pub fn accumulator(&self) -> &StateAccumulator {
        &self.accumulator
    }

    /// The state root after the block: the accumulator's root.
    pub fn state_root(&self) -> Hash {
        self.state_root
    }
}

/// Pending changes over a committed state: each touched account's value
/// before the block and now.
struct Overlay<'a, S: StateView + ?Sized> {
    base: &'a S,
    touched: BTreeMap<Address, (Account, Account)>,
}

impl<'a, S: StateView + ?Sized> Overlay<'a, S> {
    fn new(base: &'a S) -> Self {
        Overlay {
            base,
            touched: BTreeMap::new(),
        }
    }

    fn get(&mut self, address: &Address) -> Result<Account, StoreError> {
        if let Some((_, now)) = self.touched.get(address) {
            return Ok(*now);
        }
        let account = self.base.account(address)?;
        self.touched.insert(*address, (account, account));
        Ok(account)
    }

    /// Sets an account read earlier through [`Overlay::get`] (which records
    /// its value before the block, needed for the state root).
    fn set(&mut self, address: Address, account: Account) {
        let entry = self.touched.get_mut(&address);
        debug_assert!(entry.is_some(), "set before get for {address}");
        if let Some(entry) = entry {
            entry.1 = account;
        }
    }

    /// Applies `tx`, whose signature verifies iff `signature_valid`, or
    /// changes nothing and says why it doesn't apply. `Err(Ok(..))` is the
    /// transaction's fault, `Err(Err(..))` storage's.
    fn apply(
        &mut self,
        chain_id: &ChainId,
        proposer: &Address,
        tx: &Transaction,
        signature_valid: bool,
    ) -> Result<(), Result<TxError, StoreError>> {
        if tx.chain_id != *chain_id {
            return Err(Ok(TxError::WrongChain {
                expected: chain_id.clone(),
                got: tx.chain_id.clone(),
            }));
        }
        if !signature_valid {
            return Err(Ok(TxError::BadSignature { from: tx.from }));
        }
        let mut from = self.get(&tx.from).map_err(Err)?;
        if from.nonce != tx.nonce {
            return Err(Ok(TxError::NonceMismatch {
                from: tx.from,
                expected: from.nonce,
                got: tx.nonce,
            }));
        }
        let next_nonce = tx
            .nonce
            .next()
            .ok_or(Ok(TxError::NonceExhausted { from: tx.from }))?;
        let cost = tx.total_cost().map_err(Ok)?;
        from.balance = from
            .balance
            .checked_sub(cost)
            .ok_or(Ok(TxError::InsufficientBalance {
                from: tx.from,
                balance: from.balance,
                needed: cost,
            }))?;
        from.nonce = next_nonce;
        // Stage the three writes, so a failing credit leaves nothing behind.
        let mut staged: Vec<(Address, Account)> = vec![(tx.from, from)];
        for (address, amount) in [(tx.to, tx.amount), (*proposer, tx.fee)] {
            let current = match staged.iter().find(|(a, _)| *a == address) {
                Some((_, account)) => *account,
                None => self.get(&address).map_err(Err)?,
            };
            let credited =
                current
                    .balance
                    .checked_add(amount)
                    .ok_or(Ok(TxError::BalanceOverflow {
                        account: address,
                        balance: current.balance,
                        amount,
                    }))?;
            let updated = Account {
                balance: credited,
                ..current
            };
            match staged.iter_mut().find(|(a, _)| *a == address) {
                Some(slot) => slot.1 = updated,
                None => staged.push((address, updated)),
            }
        }
        for (address, account) in staged {
            self.set(address, account);
        }
        Ok(())
    }

    /// Credits the reward `header`'s seal claims to its miner.
    fn reward(&mut self, rules: &Rules, header: &BlockHeader) -> Result<(), ExecutionError> {
        let claimed = match &header.justification {
            Justification::ProofOfWork(seal) => seal.reward,
            _ => return Ok(()),
        };
        if claimed > rules.block_reward {
            return Err(BlockError::RewardTooHigh {
                claimed,
                allowed: rules.block_reward,
            }
            .into());
        }
        if claimed == Amount::ZERO {
            return Ok(());
        }
        let mut miner = self.get(&header.proposer)?;
        miner.balance = miner
            .balance
            .checked_add(claimed)
            .ok_or(BlockError::RewardOverflow {
                miner: header.proposer,
                balance: miner.balance,
                reward: claimed,
            })?;
        self.set(header.proposer, miner);
        Ok(())
    }

    fn finish(self, mut accumulator: StateAccumulator) -> StateChanges {
        let mut accounts = BTreeMap::new();
        for (address, (before, after)) in self.touched {
            if before != after {
                accumulator.update(&address, &before, &after);
                accounts.insert(address, after);
            }
        }
        StateChanges::new(accounts, accumulator)
    }
}

/// Checks `block` against its parent and the state after the parent, and
/// returns what it changes. `accumulator` is the state accumulator after
/// the parent. The block's justification is the consensus protocol's to
/// check, not this function's. Every signature is checked.
pub fn execute_block<S: StateView + ?Sized>(
    rules: &Rules,
    parent: &BlockHeader,
    state: &S,
    accumulator: &StateAccumulator,
    block: &Block,
) -> Result<StateChanges, ExecutionError> {
    execute_block_with(
        rules,
        parent,
        state,
        accumulator,
        block,
        &VerifiedTxs::new(1),
    )
}

/// [`execute_block`], taking the signatures of the transactions in
/// `verified` as valid (and recording there those it verifies).
pub fn execute_block_with<S: StateView + ?Sized>(
    rules: &Rules,
    parent: &BlockHeader,
    state: &S,
    accumulator: &StateAccumulator,
    block: &Block,
    verified: &VerifiedTxs,
) -> Result<StateChanges, ExecutionError> {
    let header = block.header();
    check_links(parent, header)?;
    if block.transactions.len() > MAX_BLOCK_TXS {
        return Err(BlockError::TooManyTransactions {
            count: block.transactions.len(),
            max: MAX_BLOCK_TXS,
        }
        .into());
    }
    let hashes = block.tx_hashes();
    let computed = merkle::root(&hashes);
    if computed != header.tx_root {
        return Err(BlockError::TxRootMismatch {
            header: header.tx_root,
            computed,
        }
        .into());
    }
    let signatures = verified.check(&block.transactions, &hashes);
    let mut overlay = Overlay::new(state);
    for (index, ((tx, hash), valid)) in block
        .transactions
        .iter()
        .zip(hashes)
        .zip(signatures)
        .enumerate()
    {
        match overlay.apply(&rules.chain_id, &header.proposer, tx, valid) {
            Ok(()) => {}
            Err(Ok(error)) => return Err(BlockError::Transaction { index, hash, error }.into()),
            Err(Err(storage)) => return Err(storage.into()),
        }
    }
    overlay.reward(rules, header)?;
    let changes = overlay.finish(accumulator.clone());
    if changes.state_root != header.state_root {
        return Err(BlockError::StateRootMismatch {
            header: header.state_root,
            computed: changes.state_root,
        }
        .into());
    }
    Ok(changes)
}

fn check_links(parent: &BlockHeader, header: &BlockHeader) -> Result<(), BlockError> {
    let expected = parent.height.next();
    if Some(header.height) != expected {
        let expected = expected.unwrap_or(parent.height);
        return Err(BlockError::WrongHeight {
            expected,
            got: header.height,
        });
    }
    let parent_hash = parent.hash();
    if header.parent != parent_hash {
        return Err(BlockError::WrongParent {
            expected: parent_hash,
            got: header.parent,
        });
    }
    if header.timestamp_ms < parent.timestamp_ms {
        return Err(BlockError::TimestampBeforeParent {
            parent_ms: parent.timestamp_ms,
            got_ms: header.timestamp_ms,
        });
    }
    Ok(())
}

/// Builds a block for a proposer: transactions that apply are kept, ones
/// that don't are refused with their reason and leave no trace.
pub struct BlockBuilder<'a, S: StateView + ?Sized> {
    rules: Rules,
    parent: &'a BlockHeader,
    proposer: Address,
    overlay: Overlay<'a, S>,
    accumulator: &'a StateAccumulator,
    transactions: Vec<Transaction>,
    /// The hashes of `transactions`.
    hashes: Vec<Hash>,
    verified: Option<&'a VerifiedTxs>,
}

impl<S: StateView + ?Sized> std::fmt::Debug for BlockBuilder<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockBuilder")
            .field("parent", &self.parent.height)
            .field("transactions", &self.transactions.len())
            .finish_non_exhaustive()
    }
}

/// Why the builder refused a transaction.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("block is full ({MAX_BLOCK_TXS} transactions)")]
    Full,
    #[error(transparent)]
    Invalid(#[from] TxError),
    #[error(transparent)]
    Storage(#[from] StoreError),
}

impl<'a, S: StateView + ?Sized> BlockBuilder<'a, S> {
    pub fn new(
        rules: Rules,
        parent: &'a BlockHeader,
        state: &'a S,
        accumulator: &'a StateAccumulator,
        proposer: Address,
    ) -> Self {
        BlockBuilder {
            rules,
            parent,
            proposer,
            overlay: Overlay::new(state),
            accumulator,
            transactions: Vec::new(),
            hashes: Vec::new(),
            verified: None,
        }
    }

    /// Takes the signatures of the transactions in `verified` as valid (and
    /// records there those [`BlockBuilder::push`] verifies).
    pub fn with_verified(mut self, verified: &'a VerifiedTxs) -> Self {
        self.verified = Some(verified);
        self
    }

    /// Adds `tx` if it applies after the transactions already added.
    pub fn push(&mut self, tx: Transaction) -> Result<(), BuildError> {
        if self.transactions.len() >= MAX_BLOCK_TXS {
            return Err(BuildError::Full);
        }
        let hash = tx.hash();
        let valid = match self.verified {
            Some(verified) if verified.contains(&hash) => true,
            Some(verified) => {
                let valid = tx.verify_signature().is_ok();
                if valid {
                    verified.insert_all([hash]);
                }
                valid
            }
            None => tx.verify_signature().is_ok(),
        };
        match self
            .overlay
            .apply(&self.rules.chain_id, &self.proposer, &tx, valid)
        {
            Ok(()) => {
                self.transactions.push(tx);
                self.hashes.push(hash);
                Ok(())
            }
            Err(Ok(error)) => Err(error.into()),
            Err(Err(storage)) => Err(storage.into()),
        }
    }

    pub fn len(&self) -> usize {
        self.transactions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.transactions.is_empty()
    }

    /// Seals the block. `timestamp_ms` is raised to the parent's if it is
    /// earlier, so the block is never invalid for its clock. Fails if the
    /// reward `justification` claims is refused (too high, or it would
    /// overflow the miner's balance) or reading state fails.
    pub fn finish(
        mut self,
        timestamp_ms: u64,
        justification: Justification,
    ) -> Result<(Block, StateChanges), ExecutionError> {
        let mut header = BlockHeader {
            height: self.parent.height.next().unwrap_or(Height(u64::MAX)),
            parent: self.parent.hash(),
            tx_root: Hash::ZERO,
            state_root: Hash::ZERO,
            timestamp_ms: timestamp_ms.max(self.parent.timestamp_ms),
            proposer: self.proposer,
            justification,
        };
        self.overlay.reward(&self.rules, &header)?;
        let changes = self.overlay.finish(self.accumulator.clone());
        header.tx_root = merkle::root(&self.hashes);
        header.state_root = changes.state_root;
        Ok((Block::new(header, self.transactions), changes))
    }
}

/// The sum of all balances, for supply checks. `None` if it overflows.
pub fn total_supply<'a>(accounts: impl IntoIterator<Item = &'a Account>) -> Option<Amount> {
    accounts
        .into_iter()
        .try_fold(Amount::ZERO, |sum, a| sum.checked_add(a.balance))
}
