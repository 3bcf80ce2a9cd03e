//! Transactions waiting for a block.
//!
//! # Admission
//!
//! A transaction enters the mempool only if, in this order:
//!
//! 1. its encoding is at most [`MAX_TX_BYTES`] and its chain id is this
//!    chain's ([`Mempool::precheck`]);
//! 2. no transaction with the same hash is pending;
//! 3. its signature verifies under the ZIP 215 rules ([`Mempool::admit`]
//!    checks it alone; [`Mempool::admit_verified`] trusts a check made
//!    before, outside the mempool lock, possibly by
//!    [`Mempool::verify_batch`], which gives the same verdicts);
//! 4. its nonce is at least the sender's next nonce in the committed state
//!    and at most [`MempoolConfig::max_nonce_gap`] above it, and no other
//!    pending transaction from the sender has that nonce (no replacement);
//! 5. the sender's balance covers amount + fee of this transaction plus
//!    amount + fee of its pending transactions with lower nonces (summed
//!    without overflow; incoming transfers are not counted);
//! 6. the mempool has room: at most [`MempoolConfig::max_txs`]
//!    transactions and [`MempoolConfig::max_bytes`] bytes of encoded
//!    transactions. A transaction a block could take (*ready*: its nonce
//!    is the sender's nonce in the committed state, advanced past the
//!    sender's consecutive pending transactions) may use all of it; one
//!    above a gap in its sender's nonces (*stuck*) only while fewer than
//!    a quarter of `max_txs` are stuck ([`Mempool::max_stuck`]). When the
//!    pool is full, a ready transaction makes room by evicting other
//!    senders' stuck transactions, except those submitted to this node's
//!    own API ([`Source::Client`]: a client was told they are admitted, so
//!    they stay until committed). Senders are taken in address order
//!    from where the last scan stopped, each one's stuck transactions all
//!    at once, at most [`MAX_STUCK_SCAN`] senders per admission, until
//!    the transaction fits; a scan that fails is not repeated until a
//!    commit or a peer's stuck transaction. Without these two rules, under overload a pool (a PBFT
//!    primary's did) filled with transactions no block could take, because
//!    the nonce below them had been refused as `mempool_full`, and then
//!    refused every transaction that could have filled a block; with
//!    eviction alone, pools stayed full of stuck transactions (with
//!    consecutive nonces sent to different nodes, most arrive stuck), and
//!    blocks carried a few dozen transactions.
//!
//! The committed state of steps 4 and 5 is read from the store at a
//! sender's first admission and kept (a bounded number of accounts); the
//! node tells the pool the accounts each commit changed
//! ([`Mempool::note_committed`]) and has it forget them all at a revert
//! ([`Mempool::forget_committed`]), so admissions do not read the store
//! again.
//!
//! These checks decide only what is worth keeping and gossiping. Whether a
//! transaction goes into a block is decided again by the block builder
//! against the state the block is built on. Single and batch signature
//! checks accept exactly the same signatures (ZIP 215; see
//! `phalanx_crypto::batch`), so whichever path admitted a transaction, the
//! block builder and every validator reach the same verdict on it.
//!
//! # Selection
//!
//! [`Mempool::select`] takes, for each sender, the run of consecutive
//! nonces that starts at the sender's nonce in the given state, as long as
//! the sender's balance covers each transaction's amount + fee in turn.
//! Senders take turns: one transaction each per round, senders ordered by
//! the arrival of their first ready transaction (oldest first), until a
//! limit is reached or nothing is left. A sender whose next transaction
//! would exceed the byte limit is done for this block. There is no fee
//! priority: fees only pay the proposer.
//!
//! # Ready transactions
//!
//! Each sender's *ready* transactions are the consecutive run of its
//! pending nonces from its nonce in the committed state, as the mempool
//! last saw it (at an admission or a commit): what a block on the committed
//! state could take, balances permitting. [`Mempool::ready`] counts them,
//! so a proposer asks whether a block is worth making without a pool full
//! of stuck transactions making it propose nearly empty blocks without
//! pause; [`Mempool::take_stale_ready`] hands the ones that have waited
//! long to be gossiped again (a peer that refused or missed one, a PBFT
//! primary above all, would otherwise never see it), and
//! [`Mempool::gaps`] names the nonces missing below stuck transactions
//! that have waited, for the node to ask its peers for
//! ([`Mempool::filling`] is a peer's answer; see `crate::txgossip`).
//!
//! # Bounds
//!
//! Every structure is bounded by the number of pending transactions
//! (`max_txs`), and their total encoded size by `max_bytes`. Because a
//! transaction's nonce is at most `max_nonce_gap` above its sender's nonce
//! when admitted, and nonces never go down, one sender holds at most
//! `max_nonce_gap + 1` transactions.

use phalanx_chain::encoding;
use phalanx_chain::{
    Account, Address, Amount, Block, ChainId, Hash, Nonce, StateView, StoreError, Transaction,
    tx::MAX_TX_BYTES,
};
use phalanx_crypto::maps;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

/// Default for [`MempoolConfig::max_txs`].
pub const DEFAULT_MAX_TXS: usize = 20_000;
/// Default for [`MempoolConfig::max_bytes`]: 32 MiB.
pub const DEFAULT_MAX_BYTES: usize = 32 * 1024 * 1024;
/// Default for [`MempoolConfig::max_nonce_gap`].
pub const DEFAULT_MAX_NONCE_GAP: u64 = 64;

/// The mempool's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Pending transactions kept at most (default 20,000).
    pub max_txs: usize,
    /// Total encoded size of pending transactions kept at most (default
    /// 32 MiB).
    pub max_bytes: usize,
    /// How far above the sender's next nonce a transaction's nonce may be
    /// (default 64).
    pub max_nonce_gap: u64,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_txs: DEFAULT_MAX_TXS,
            max_bytes: DEFAULT_MAX_BYTES,
            max_nonce_gap: DEFAULT_MAX_NONCE_GAP,
        }
    }
}

/// Why a transaction was not admitted. [`MempoolError::code`] gives the
/// stable code the HTTP API reports.
#[derive(Debug, thiserror::Error)]
pub enum MempoolError {
    #[error("transaction encodes to {size} bytes, the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("transaction is for chain {got}, this node is on chain {expected}")]
    WrongChain { expected: ChainId, got: ChainId },
    #[error("signature of the transaction from {from} does not verify")]
    BadSignature { from: Address },
    #[error("nonce {got} is below the account's next nonce {expected}")]
    NonceTooLow { got: Nonce, expected: Nonce },
    #[error(
        "nonce {got} is more than {max_gap} above the account's next nonce {expected}: send the missing nonces first"
    )]
    NonceGap {
        got: Nonce,
        expected: Nonce,
        max_gap: u64,
    },
    #[error("another pending transaction from {from} already has nonce {nonce}: {existing}")]
    NoncePending {
        from: Address,
        nonce: Nonce,
        existing: Hash,
    },
    #[error(
        "balance {balance} does not cover {needed}: amount plus fee of this transaction and of the sender's {pending} pending transactions with lower nonces"
    )]
    InsufficientBalance {
        balance: Amount,
        /// Wider than [`Amount`]: the sum may exceed `u64::MAX`.
        needed: u128,
        pending: usize,
    },
    #[error("transaction {hash} is already pending")]
    Duplicate { hash: Hash },
    #[error(
        "mempool is full: {len} of {max_txs} transactions, {bytes} of {max_bytes} bytes (this transaction is {size} bytes)"
    )]
    Full {
        len: usize,
        max_txs: usize,
        bytes: usize,
        max_bytes: usize,
        size: usize,
    },
    #[error("reading account state failed: {0}")]
    Storage(#[from] StoreError),
}

impl MempoolError {
    /// The stable code the HTTP API reports for this error.
    pub fn code(&self) -> &'static str {
        match self {
            MempoolError::TooLarge { .. } => "too_large",
            MempoolError::WrongChain { .. } => "wrong_chain",
            MempoolError::BadSignature { .. } => "bad_signature",
            MempoolError::NonceTooLow { .. } => "nonce_too_low",
            MempoolError::NonceGap { .. } => "nonce_gap",
            MempoolError::NoncePending { .. } => "nonce_pending",
            MempoolError::InsufficientBalance { .. } => "insufficient_balance",
            MempoolError::Duplicate { .. } => "duplicate",
            MempoolError::Full { .. } => "mempool_full",
            MempoolError::Storage(_) => "internal",
        }
    }
}

#[derive(Debug)]
struct Entry {
    tx: Transaction,
    /// Encoded size in bytes.
    size: usize,
    /// Arrival order.
    seq: u64,
    /// When it was admitted or last handed out to be gossiped again.
    gossiped: Instant,
    /// Where it came from; a client's is never evicted.
    source: Source,
}

/// One sender's pending transactions.
#[derive(Debug)]
struct Run {
    /// By nonce (one per nonce).
    txs: BTreeMap<Nonce, Pending>,
    /// The sender's nonce in the committed state, when last seen (at an
    /// admission or a commit); no transaction in `txs` is below it.
    base: Nonce,
    /// How many of `txs` follow `base` without a gap: the ready ones.
    ready: usize,
}

/// A pending transaction in its sender's run: its hash and what it costs
/// the sender (amount + fee, which cannot overflow a u128).
#[derive(Debug, Clone, Copy)]
struct Pending {
    hash: Hash,
    cost: u128,
}

impl Pending {
    fn cost_of(tx: &Transaction) -> u128 {
        u128::from(tx.amount.0) + u128::from(tx.fee.0)
    }
}

/// Where a transaction came from. A node keeps what it acknowledged to
/// its own clients: eviction takes only stuck transactions from peers (as
/// geth keeps its local transactions), so a transaction a client was told
/// is admitted leaves the pool only when committed or passed by its
/// sender's nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Submitted to this node's API.
    Client,
    /// Gossiped by a peer, sent for a gap this node asked about, or put
    /// back from a reverted block.
    Peer,
}

/// Nonces one sender is missing below its first stuck transaction: what
/// [`Mempool::gaps`] finds and a peer's [`Mempool::filling`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Gap {
    pub sender: Address,
    /// The first missing nonce.
    pub from: Nonce,
    /// How many nonces are missing from `from` on.
    pub count: u32,
}

/// The members of `set` in order from just after `after` (all of them if
/// `None`), wrapping around to the start.
fn from_after(set: &BTreeSet<Address>, after: Option<Address>) -> impl Iterator<Item = &Address> {
    use std::ops::Bound::{Excluded, Unbounded};
    let (tail, head) = match after {
        Some(a) => (set.range((Excluded(a), Unbounded)), set.range(..=a)),
        None => (set.range(..), set.range(..Address([0; 32]))),
    };
    tail.chain(head)
}

/// Senders whose stuck transactions a full pool evicts, at most, to make
/// room for one admission.
pub const MAX_STUCK_SCAN: usize = 64;

/// Committed accounts the pool keeps, at least (at most `max_txs` if
/// that is more).
const MIN_KEPT_ACCOUNTS: usize = 4_096;

/// The node's pending transactions. See the module docs for the rules.
pub struct Mempool {
    config: MempoolConfig,
    chain_id: ChainId,
    by_hash: HashMap<Hash, Entry>,
    /// Each sender's pending transactions.
    by_sender: BTreeMap<Address, Run>,
    /// Every pending transaction by arrival.
    arrival: BTreeMap<u64, Hash>,
    /// Senders with stuck transactions (pending but not ready).
    gapped: BTreeSet<Address>,
    /// Accounts in the committed state, as read by admissions and then
    /// told by each commit ([`Mempool::note_committed`]); at most
    /// [`Mempool::max_accounts`]. Admissions check against them instead of
    /// reading the store, which took 6-8 % of a loaded machine
    /// (docs/BENCH.md).
    accounts: maps::HashMap<Address, Account>,
    /// Ready transactions, over all senders.
    ready: usize,
    /// Stuck transactions evicted so far.
    evicted: u64,
    /// The sender [`Mempool::take_stale_ready`] stopped after.
    regossip_after: Option<Address>,
    /// The sender [`Mempool::gaps`] stopped after.
    gaps_after: Option<Address>,
    /// The sender the last eviction scan stopped after.
    evict_after: Option<Address>,
    /// Set when an eviction scan freed too little (the stuck transactions
    /// it met were clients'): later admissions do not scan again until a
    /// commit or a stuck transaction from a peer changes that.
    evict_blocked: bool,
    next_seq: u64,
    bytes: usize,
}

impl std::fmt::Debug for Mempool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mempool")
            .field("config", &self.config)
            .field("chain_id", &self.chain_id)
            .field("len", &self.by_hash.len())
            .field("bytes", &self.bytes)
            .field("senders", &self.by_sender.len())
            .field("ready", &self.ready)
            .finish_non_exhaustive()
    }
}

impl Mempool {
    pub fn new(config: MempoolConfig, chain_id: ChainId) -> Mempool {
        Mempool {
            config,
            chain_id,
            by_hash: HashMap::new(),
            by_sender: BTreeMap::new(),
            arrival: BTreeMap::new(),
            gapped: BTreeSet::new(),
            accounts: maps::HashMap::default(),
            ready: 0,
            evicted: 0,
            regossip_after: None,
            gaps_after: None,
            evict_after: None,
            evict_blocked: false,
            next_seq: 0,
            bytes: 0,
        }
    }

    pub fn config(&self) -> &MempoolConfig {
        &self.config
    }

    pub fn chain_id(&self) -> &ChainId {
        &self.chain_id
    }

    /// The checks that need no state (size and chain id), for callers that
    /// want to refuse a transaction before verifying its signature or taking
    /// the mempool lock. Returns the transaction's encoded size.
    pub fn precheck(tx: &Transaction, chain_id: &ChainId) -> Result<usize, MempoolError> {
        let size = encoding::encoded_len(tx);
        if size > MAX_TX_BYTES {
            return Err(MempoolError::TooLarge {
                size,
                limit: MAX_TX_BYTES,
            });
        }
        if tx.chain_id != *chain_id {
            return Err(MempoolError::WrongChain {
                expected: chain_id.clone(),
                got: tx.chain_id.clone(),
            });
        }
        Ok(size)
    }

    /// Checks `tx` (including its signature, under ZIP 215) against
    /// the committed `state` and the pending transactions, and keeps it.
    /// Returns its hash.
    pub fn admit<S: StateView + ?Sized>(
        &mut self,
        tx: Transaction,
        state: &S,
    ) -> Result<Hash, MempoolError> {
        let size = Mempool::precheck(&tx, &self.chain_id)?;
        let hash = tx.hash();
        self.check_duplicate(hash)?;
        tx.verify_signature()
            .map_err(|_| MempoolError::BadSignature { from: tx.from })?;
        self.admit_checked(tx, hash, size, Source::Peer, state)
    }

    /// Like [`Mempool::admit`] for a transaction whose signature the caller
    /// has already verified (alone or with [`Mempool::verify_batch`]),
    /// so that the lock around the mempool is not held while verifying.
    /// `hash` is the caller's [`Transaction::hash`] of `tx` (not computed
    /// again here).
    pub fn admit_verified<S: StateView + ?Sized>(
        &mut self,
        tx: Transaction,
        hash: Hash,
        source: Source,
        state: &S,
    ) -> Result<Hash, MempoolError> {
        debug_assert_eq!(hash, tx.hash());
        let size = Mempool::precheck(&tx, &self.chain_id)?;
        self.check_duplicate(hash)?;
        self.admit_checked(tx, hash, size, source, state)
    }

    /// Verifies the signatures of `txs` in one batch, with the verdicts of
    /// checking each alone (ZIP 215; see `phalanx_crypto::batch` for why
    /// the two agree). `result[i]` says whether `txs[i]` is valid.
    pub fn verify_batch(txs: &[Transaction]) -> Vec<bool> {
        let refs: Vec<&Transaction> = txs.iter().collect();
        Transaction::verify_batch(&refs)
    }

    /// [`Mempool::verify_batch`] split into one batch per thread, on up to
    /// `threads` threads (scoped, so it blocks until all are done: call it
    /// off the async runtime). Small inputs stay on the calling thread.
    pub fn verify_batch_parallel(txs: &[Transaction], threads: usize) -> Vec<bool> {
        let refs: Vec<&Transaction> = txs.iter().collect();
        phalanx_chain::verified::verify_batch_parallel(&refs, threads)
    }

    /// The threads signature checks may use: the machine's cores.
    pub fn verify_threads() -> usize {
        phalanx_chain::verified::cores()
    }

    fn check_duplicate(&self, hash: Hash) -> Result<(), MempoolError> {
        if self.by_hash.contains_key(&hash) {
            return Err(MempoolError::Duplicate { hash });
        }
        Ok(())
    }

    /// Steps 4 to 6 of the module docs, then inserts.
    fn admit_checked<S: StateView + ?Sized>(
        &mut self,
        tx: Transaction,
        hash: Hash,
        size: usize,
        source: Source,
        state: &S,
    ) -> Result<Hash, MempoolError> {
        let account = self.committed_account(&tx.from, state)?;
        self.check_nonce(&tx, account.nonce)?;
        self.check_balance(&tx, account)?;
        let ready = tx.nonce == self.next_nonce(&tx.from, account.nonce);
        if !ready && self.stuck() >= self.max_stuck() {
            // Stuck transactions may take only part of the pool.
            return Err(self.full(size));
        }
        if let Err(full) = self.check_capacity(size)
            && (!ready || !self.evict_stuck(&tx.from, size))
        {
            return Err(full);
        }
        self.insert(hash, tx, size, source, account.nonce);
        Ok(hash)
    }

    /// The sender's account in the committed state: as the pool knows it
    /// ([`Mempool::note_committed`]), or read from `state` and kept.
    fn committed_account<S: StateView + ?Sized>(
        &mut self,
        address: &Address,
        state: &S,
    ) -> Result<Account, StoreError> {
        if let Some(account) = self.accounts.get(address) {
            return Ok(*account);
        }
        let account = state.account(address)?;
        if self.accounts.len() >= self.max_accounts() {
            // A bound, rarely reached: start again rather than track age.
            self.accounts.clear();
        }
        self.accounts.insert(*address, account);
        Ok(account)
    }

    /// Accounts [`Mempool::committed_account`] keeps, at most.
    fn max_accounts(&self) -> usize {
        self.config.max_txs.max(MIN_KEPT_ACCOUNTS)
    }

    /// Evicts the stuck transactions from peers ([`Source::Peer`]) of
    /// senders other than `except`, in address order from where the last
    /// scan stopped, at most [`MAX_STUCK_SCAN`] senders, until one more
    /// transaction of `size` bytes fits; true if it does. A scan that
    /// fails is not repeated until a commit, or a stuck transaction from a
    /// peer, gives the next one something to find: a pool whose stuck
    /// transactions are clients' would otherwise scan on every admission.
    fn evict_stuck(&mut self, except: &Address, size: usize) -> bool {
        if self.evict_blocked {
            return false;
        }
        let senders: Vec<Address> = from_after(&self.gapped, self.evict_after)
            .filter(|sender| *sender != except)
            .take(MAX_STUCK_SCAN)
            .copied()
            .collect();
        let before = self.evicted;
        for sender in senders {
            self.evict_after = Some(sender);
            let stuck: Vec<Hash> = match self.by_sender.get(&sender) {
                Some(run) => run
                    .txs
                    .range(run.base..)
                    .skip(run.ready)
                    .map(|(_, p)| p.hash)
                    .filter(|h| {
                        self.by_hash
                            .get(h)
                            .is_some_and(|e| e.source == Source::Peer)
                    })
                    .collect(),
                None => continue,
            };
            for hash in stuck.iter().rev() {
                if self.remove(hash).is_some() {
                    self.evicted = self.evicted.saturating_add(1);
                }
            }
            if self.check_capacity(size).is_ok() {
                return true;
            }
        }
        // Nothing evictable among the senders scanned (the admitting
        // sender's own excepted): no scan again until a commit or a peer's
        // stuck transaction; the next one starts after these senders.
        if self.evicted == before && !self.has_stuck_from_peers(except) {
            self.evict_blocked = true;
        }
        false
    }

    /// Whether `sender` has stuck transactions from peers.
    fn has_stuck_from_peers(&self, sender: &Address) -> bool {
        self.by_sender.get(sender).is_some_and(|run| {
            run.txs.range(run.base..).skip(run.ready).any(|(_, p)| {
                self.by_hash
                    .get(&p.hash)
                    .is_some_and(|e| e.source == Source::Peer)
            })
        })
    }

    /// The sender's nonce `from` advanced past its consecutive pending
    /// transactions.
    fn next_nonce(&self, sender: &Address, from: Nonce) -> Nonce {
        let mut next = from;
        if let Some(run) = self.by_sender.get(sender) {
            for nonce in run.txs.range(from..).map(|(n, _)| *n) {
                match next.next() {
                    Some(after) if nonce == next => next = after,
                    _ => break,
                }
            }
        }
        next
    }

    /// Recounts the sender's ready transactions (at most `max_nonce_gap +
    /// 1` steps) and whether it has stuck ones.
    fn refresh(&mut self, sender: &Address) {
        let Some(run) = self.by_sender.get_mut(sender) else {
            self.gapped.remove(sender);
            return;
        };
        let mut ready = 0;
        let mut next = Some(run.base);
        for nonce in run.txs.range(run.base..).map(|(n, _)| *n) {
            if Some(nonce) != next {
                break;
            }
            ready += 1;
            next = nonce.next();
        }
        self.ready = self.ready.saturating_sub(run.ready).saturating_add(ready);
        run.ready = ready;
        if run.txs.len() > ready {
            self.gapped.insert(*sender);
        } else {
            self.gapped.remove(sender);
        }
    }

    fn check_nonce(&self, tx: &Transaction, expected: Nonce) -> Result<(), MempoolError> {
        if tx.nonce < expected {
            return Err(MempoolError::NonceTooLow {
                got: tx.nonce,
                expected,
            });
        }
        if tx.nonce.0 - expected.0 > self.config.max_nonce_gap {
            return Err(MempoolError::NonceGap {
                got: tx.nonce,
                expected,
                max_gap: self.config.max_nonce_gap,
            });
        }
        if let Some(existing) = self
            .by_sender
            .get(&tx.from)
            .and_then(|run| run.txs.get(&tx.nonce))
        {
            return Err(MempoolError::NoncePending {
                from: tx.from,
                nonce: tx.nonce,
                existing: existing.hash,
            });
        }
        Ok(())
    }

    fn check_balance(&self, tx: &Transaction, account: Account) -> Result<(), MempoolError> {
        let mut needed = Pending::cost_of(tx);
        let mut pending = 0;
        if let Some(run) = self.by_sender.get(&tx.from) {
            // Each pending entry carries its cost: no lookup per entry.
            for entry in run.txs.range(account.nonce..tx.nonce).map(|(_, p)| p) {
                needed = needed.saturating_add(entry.cost);
                pending += 1;
            }
        }
        if needed > u128::from(account.balance.0) {
            return Err(MempoolError::InsufficientBalance {
                balance: account.balance,
                needed,
                pending,
            });
        }
        Ok(())
    }

    fn check_capacity(&self, size: usize) -> Result<(), MempoolError> {
        let bytes_after = self.bytes.saturating_add(size);
        if self.by_hash.len() >= self.config.max_txs || bytes_after > self.config.max_bytes {
            return Err(self.full(size));
        }
        Ok(())
    }

    fn full(&self, size: usize) -> MempoolError {
        MempoolError::Full {
            len: self.by_hash.len(),
            max_txs: self.config.max_txs,
            bytes: self.bytes,
            max_bytes: self.config.max_bytes,
            size,
        }
    }

    /// Pending transactions that are not ready (above a nonce gap).
    pub fn stuck(&self) -> usize {
        self.by_hash.len().saturating_sub(self.ready)
    }

    /// Stuck transactions kept at most: a quarter of `max_txs` (at least
    /// one), so the rest of the pool is always there for ready ones.
    pub fn max_stuck(&self) -> usize {
        (self.config.max_txs / 4).max(1)
    }

    /// Keeps `tx`; `base` is its sender's nonce in the committed state.
    fn insert(&mut self, hash: Hash, tx: Transaction, size: usize, source: Source, base: Nonce) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let from = tx.from;
        let run = self.by_sender.entry(from).or_insert_with(|| Run {
            txs: BTreeMap::new(),
            base,
            ready: 0,
        });
        let moved = base > run.base;
        run.txs.insert(
            tx.nonce,
            Pending {
                hash,
                cost: Pending::cost_of(&tx),
            },
        );
        self.arrival.insert(seq, hash);
        self.bytes = self.bytes.saturating_add(size);
        self.by_hash.insert(
            hash,
            Entry {
                tx,
                size,
                seq,
                gossiped: Instant::now(),
                source,
            },
        );
        if moved {
            // Committed past what this pool saw: what is below is stale.
            self.rebase(&from, base);
        } else {
            self.refresh(&from);
        }
        if source == Source::Peer && self.gapped.contains(&from) {
            // Something a full pool may evict again.
            self.evict_blocked = false;
        }
    }

    /// The sender's nonce in the committed state is now `nonce`: forgets
    /// its transactions below it and recounts.
    fn rebase(&mut self, sender: &Address, nonce: Nonce) {
        self.remove_below(sender, nonce);
        if let Some(run) = self.by_sender.get_mut(sender) {
            run.base = run.base.max(nonce);
        }
        self.refresh(sender);
    }

    /// Removes one transaction, if pending.
    fn remove(&mut self, hash: &Hash) -> Option<Transaction> {
        let entry = self.by_hash.remove(hash)?;
        self.arrival.remove(&entry.seq);
        self.bytes = self.bytes.saturating_sub(entry.size);
        let sender = entry.tx.from;
        if let Some(run) = self.by_sender.get_mut(&sender) {
            if run.txs.get(&entry.tx.nonce).map(|p| &p.hash) == Some(hash) {
                run.txs.remove(&entry.tx.nonce);
            }
            if run.txs.is_empty() {
                self.ready = self.ready.saturating_sub(run.ready);
                self.by_sender.remove(&sender);
            }
        }
        self.refresh(&sender);
        Some(entry.tx)
    }

    /// Up to `max_txs` transactions of at most `max_bytes` in total that
    /// apply, in order, to `state` (the state after the block being built
    /// on, committed or not): per sender the consecutive run of nonces from
    /// its nonce in `state` that its balance covers, senders taking turns
    /// (see the module docs). A sender whose account cannot be read is
    /// skipped.
    pub fn select<S: StateView + ?Sized>(
        &self,
        state: &S,
        max_txs: usize,
        max_bytes: usize,
    ) -> Vec<Transaction> {
        struct Cursor<'a> {
            run: &'a BTreeMap<Nonce, Pending>,
            next: Nonce,
            balance: Amount,
            first_seq: u64,
        }
        let mut cursors = Vec::new();
        for (sender, run) in &self.by_sender {
            let account = match state.account(sender) {
                Ok(account) => account,
                Err(error) => {
                    tracing::warn!(%sender, %error, "mempool: cannot read account, skipping sender");
                    continue;
                }
            };
            let first = run
                .txs
                .get(&account.nonce)
                .and_then(|p| self.by_hash.get(&p.hash));
            if let Some(entry) = first {
                cursors.push(Cursor {
                    run: &run.txs,
                    next: account.nonce,
                    balance: account.balance,
                    first_seq: entry.seq,
                });
            }
        }
        cursors.sort_by_key(|c| c.first_seq);
        let mut selected = Vec::new();
        let mut bytes = 0usize;
        while !cursors.is_empty() && selected.len() < max_txs {
            cursors.retain_mut(|c| {
                if selected.len() >= max_txs {
                    return false;
                }
                let Some(entry) = c.run.get(&c.next).and_then(|p| self.by_hash.get(&p.hash)) else {
                    return false;
                };
                let left = entry
                    .tx
                    .total_cost()
                    .ok()
                    .and_then(|cost| c.balance.checked_sub(cost));
                let total = bytes.checked_add(entry.size).filter(|b| *b <= max_bytes);
                let (Some(left), Some(total), Some(next)) = (left, total, c.next.next()) else {
                    return false;
                };
                selected.push(entry.tx.clone());
                bytes = total;
                c.balance = left;
                c.next = next;
                true
            });
        }
        selected
    }

    /// Forgets `block`'s transactions, and every pending transaction whose
    /// nonce is now below its sender's nonce after `block`. Every
    /// transaction of a valid block applied and advanced its sender's
    /// nonce by one, so that nonce is the highest of the sender's nonces in
    /// the block plus one: no state is read.
    pub fn remove_committed(&mut self, block: &Block) {
        let mut senders: BTreeMap<Address, Nonce> = BTreeMap::new();
        for tx in &block.transactions {
            self.remove(&tx.hash());
            if let Some(after) = tx.nonce.next() {
                let next = senders.entry(tx.from).or_insert(after);
                *next = (*next).max(after);
            }
        }
        for (sender, nonce) in senders {
            self.rebase(&sender, nonce);
        }
        self.evict_blocked = false;
    }

    /// Tells the pool the accounts a commit changed (their new values,
    /// [`StateChanges::accounts`](phalanx_chain::StateChanges)): the ones
    /// it keeps are updated, and a pending sender among them forgets its
    /// transactions below its new nonce. Call it after every commit, in
    /// commit order, after [`Mempool::remove_committed`]: admissions trust
    /// the accounts the pool keeps (see [`Mempool`]).
    pub fn note_committed(&mut self, accounts: &BTreeMap<Address, Account>) {
        for (address, account) in accounts {
            if let Some(kept) = self.accounts.get_mut(address) {
                *kept = *account;
            }
            if self
                .by_sender
                .get(address)
                .is_some_and(|run| account.nonce > run.base)
            {
                self.rebase(address, account.nonce);
            }
        }
    }

    /// Forgets the accounts the pool keeps: admissions read the store
    /// again. Call it when the committed state went back (a revert).
    pub fn forget_committed(&mut self) {
        self.accounts.clear();
    }

    /// Removes the sender's pending transactions with nonces below `nonce`.
    fn remove_below(&mut self, sender: &Address, nonce: Nonce) {
        let stale: Vec<Hash> = match self.by_sender.get(sender) {
            Some(run) => run.txs.range(..nonce).map(|(_, p)| p.hash).collect(),
            None => return,
        };
        for hash in stale {
            self.remove(&hash);
        }
    }

    /// The nonce the sender's next transaction should carry: its nonce in
    /// `state`, advanced past its consecutive pending transactions.
    pub fn pending_nonce<S: StateView + ?Sized>(
        &self,
        address: &Address,
        state: &S,
    ) -> Result<Nonce, StoreError> {
        Ok(self.next_nonce(address, state.account(address)?.nonce))
    }

    /// Ready transactions: what blocks on the committed state could take,
    /// balances permitting (see the module docs).
    pub fn ready(&self) -> usize {
        self.ready
    }

    /// Stuck transactions evicted so far to make room for ready ones.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Up to `limit` ready transactions, at most the first `per_sender` of
    /// each sender's run, that were admitted or last handed out here no
    /// later than `before`; marks them handed out at `now`. Senders are
    /// visited in address order from where the last call stopped, so a low
    /// `limit` still reaches every sender in turn.
    pub fn take_stale_ready(
        &mut self,
        before: Instant,
        now: Instant,
        per_sender: usize,
        limit: usize,
    ) -> Vec<Transaction> {
        use std::ops::Bound::{Excluded, Unbounded};
        let mut out = Vec::new();
        let start = self.regossip_after;
        let after = match start {
            Some(a) => self.by_sender.range((Excluded(a), Unbounded)),
            None => self.by_sender.range(..),
        };
        let before_start = match start {
            Some(a) => self.by_sender.range(..=a),
            None => self.by_sender.range(..Address([0; 32])),
        };
        let mut last = None;
        'senders: for (sender, run) in after.chain(before_start) {
            for (_, p) in run.txs.range(run.base..).take(run.ready.min(per_sender)) {
                if out.len() >= limit {
                    break 'senders;
                }
                if let Some(entry) = self.by_hash.get_mut(&p.hash)
                    && entry.gossiped <= before
                {
                    entry.gossiped = now;
                    out.push(entry.tx.clone());
                }
            }
            last = Some(*sender);
        }
        self.regossip_after = last;
        out
    }

    /// Up to `limit` gaps, one per sender: for each sender with stuck
    /// transactions whose first stuck one was admitted no later than
    /// `before`, the nonces missing below it. Senders are visited in
    /// address order from where the last call stopped.
    pub fn gaps(&mut self, before: Instant, limit: usize) -> Vec<Gap> {
        let mut out = Vec::new();
        let mut last = None;
        for sender in from_after(&self.gapped, self.gaps_after) {
            if out.len() >= limit {
                break;
            }
            last = Some(*sender);
            let Some(run) = self.by_sender.get(sender) else {
                continue;
            };
            let Some(from) = run.base.0.checked_add(run.ready as u64) else {
                continue;
            };
            let Some((stuck, pending)) = run.txs.range(Nonce(from)..).next() else {
                continue;
            };
            let old = self
                .by_hash
                .get(&pending.hash)
                .is_some_and(|e| e.gossiped <= before);
            let count = u32::try_from(stuck.0.saturating_sub(from)).unwrap_or(u32::MAX);
            if old && count > 0 {
                out.push(Gap {
                    sender: *sender,
                    from: Nonce(from),
                    count,
                });
            }
        }
        self.gaps_after = last;
        out
    }

    /// The sender's pending transactions with nonces in the gap, in nonce
    /// order.
    pub fn filling(&self, gap: &Gap) -> impl Iterator<Item = &Transaction> + '_ {
        let (from, end) = (
            gap.from,
            Nonce(gap.from.0.saturating_add(u64::from(gap.count))),
        );
        self.by_sender
            .get(&gap.sender)
            .into_iter()
            .flat_map(move |run| run.txs.range(from..end))
            .filter_map(|(_, p)| self.by_hash.get(&p.hash).map(|e| &e.tx))
    }

    pub fn get(&self, hash: &Hash) -> Option<&Transaction> {
        self.by_hash.get(hash).map(|e| &e.tx)
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.by_hash.contains_key(hash)
    }

    /// Pending transactions.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Total encoded size of the pending transactions.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Senders with pending transactions.
    pub fn senders(&self) -> usize {
        self.by_sender.len()
    }

    /// Pending transactions, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Transaction> + '_ {
        self.arrival
            .values()
            .filter_map(|h| self.by_hash.get(h).map(|e| &e.tx))
    }

    /// The hashes of the first `limit` pending transactions, oldest first.
    pub fn snapshot(&self, limit: usize) -> Vec<Hash> {
        self.arrival.values().take(limit).copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_chain::{BlockHeader, Height, Justification};
    use phalanx_crypto::{Keypair, Signature};

    fn chain() -> ChainId {
        ChainId::new("mempool-test").unwrap()
    }

    fn key(i: u8) -> Keypair {
        Keypair::from_seed(&[i; 32])
    }

    fn addr(i: u8) -> Address {
        key(i).public().into()
    }

    fn tx(from: u8, nonce: u64, amount: u64) -> Transaction {
        Transaction::sign(
            &key(from),
            chain(),
            addr(200),
            Amount(amount),
            Amount(1),
            Nonce(nonce),
        )
    }

    fn state(accounts: &[(u8, u64, u64)]) -> BTreeMap<Address, Account> {
        accounts
            .iter()
            .map(|&(who, balance, nonce)| {
                (
                    addr(who),
                    Account {
                        balance: Amount(balance),
                        nonce: Nonce(nonce),
                    },
                )
            })
            .collect()
    }

    fn pool() -> Mempool {
        Mempool::new(MempoolConfig::default(), chain())
    }

    fn block(txs: Vec<Transaction>) -> Block {
        Block::new(
            BlockHeader {
                height: Height(1),
                parent: Hash::ZERO,
                tx_root: Hash::ZERO,
                state_root: Hash::ZERO,
                timestamp_ms: 0,
                proposer: Address::default(),
                justification: Justification::Genesis,
            },
            txs,
        )
    }

    #[test]
    fn admits_and_reports_each_rule_with_its_code() {
        let st = state(&[(1, 100, 5)]);
        let mut mp = pool();
        let ok = tx(1, 5, 10);
        let hash = mp.admit(ok.clone(), &st).unwrap();
        assert_eq!(hash, ok.hash());
        assert!(mp.contains(&hash));
        assert_eq!(mp.get(&hash), Some(&ok));

        let code = |mp: &mut Mempool, t: Transaction| mp.admit(t, &st).unwrap_err();
        let err = code(&mut mp, ok.clone());
        assert_eq!(err.code(), "duplicate");

        let low = code(&mut mp, tx(1, 3, 1));
        assert_eq!(low.code(), "nonce_too_low");
        assert_eq!(
            low.to_string(),
            "nonce 3 is below the account's next nonce 5"
        );
        assert_eq!(
            code(&mut mp, tx(1, 5 + DEFAULT_MAX_NONCE_GAP + 1, 1)).code(),
            "nonce_gap"
        );
        assert_eq!(code(&mut mp, tx(1, 5, 11)).code(), "nonce_pending");

        let mut bad = tx(1, 6, 1);
        bad.signature = Signature([7; 64]);
        assert_eq!(code(&mut mp, bad).code(), "bad_signature");

        let other = Transaction::sign(
            &key(1),
            ChainId::new("other").unwrap(),
            addr(2),
            Amount(1),
            Amount(1),
            Nonce(6),
        );
        assert_eq!(code(&mut mp, other).code(), "wrong_chain");

        // 100 covers 11 (pending nonce 5) + 89, not + 90.
        let over = code(&mut mp, tx(1, 6, 89));
        assert_eq!(over.code(), "insufficient_balance");
        assert!(over.to_string().contains("does not cover 101"), "{over}");
        mp.admit(tx(1, 6, 88), &st).unwrap();
        assert_eq!(mp.len(), 2);
    }

    #[test]
    fn amount_plus_fee_overflow_is_insufficient_balance() {
        let st = state(&[(1, u64::MAX, 0)]);
        let mut mp = pool();
        let err = mp.admit(tx(1, 0, u64::MAX), &st).unwrap_err();
        assert_eq!(err.code(), "insufficient_balance");
        assert!(
            err.to_string()
                .contains(&(u128::from(u64::MAX) + 1).to_string())
        );
    }

    #[test]
    fn capacity_counts_transactions_and_bytes() {
        let st = state(&[(1, 1000, 0), (2, 1000, 0)]);
        let size = encoding::encode(&tx(1, 0, 1)).len();
        let mut mp = Mempool::new(
            MempoolConfig {
                max_txs: 2,
                max_bytes: 10 * size,
                max_nonce_gap: 8,
            },
            chain(),
        );
        mp.admit(tx(1, 0, 1), &st).unwrap();
        mp.admit(tx(2, 0, 1), &st).unwrap();
        assert_eq!(
            mp.admit(tx(1, 1, 1), &st).unwrap_err().code(),
            "mempool_full"
        );
        assert_eq!(mp.bytes(), 2 * size);

        let mut small = Mempool::new(
            MempoolConfig {
                max_txs: 100,
                max_bytes: size + size / 2,
                max_nonce_gap: 8,
            },
            chain(),
        );
        small.admit(tx(1, 0, 1), &st).unwrap();
        assert_eq!(
            small.admit(tx(2, 0, 1), &st).unwrap_err().code(),
            "mempool_full"
        );
    }

    #[test]
    fn select_takes_consecutive_runs_round_robin_within_limits() {
        let st = state(&[(1, 1000, 0), (2, 1000, 3), (3, 1000, 0)]);
        let mut mp = pool();
        // Sender 1: nonces 0, 1, 3 (2 missing). Sender 2: 3, 4. Sender 3: 1 only.
        for t in [
            tx(1, 0, 1),
            tx(2, 3, 1),
            tx(1, 1, 1),
            tx(1, 3, 1),
            tx(2, 4, 1),
        ] {
            mp.admit(t, &st).unwrap();
        }
        mp.admit(tx(3, 1, 1), &st).unwrap();
        let picked: Vec<(Address, u64)> = mp
            .select(&st, 100, usize::MAX)
            .iter()
            .map(|t| (t.from, t.nonce.0))
            .collect();
        assert_eq!(
            picked,
            vec![(addr(1), 0), (addr(2), 3), (addr(1), 1), (addr(2), 4)]
        );
        assert_eq!(mp.select(&st, 3, usize::MAX).len(), 3);
        let size = encoding::encode(&tx(1, 0, 1)).len();
        assert_eq!(mp.select(&st, 100, 2 * size + 1).len(), 2);
        assert!(mp.select(&st, 0, usize::MAX).is_empty());

        // On a state where sender 1 is at nonce 1, its run starts there.
        let after = state(&[(1, 1000, 1), (2, 1000, 3)]);
        let picked: Vec<u64> = mp
            .select(&after, 100, usize::MAX)
            .iter()
            .filter(|t| t.from == addr(1))
            .map(|t| t.nonce.0)
            .collect();
        assert_eq!(picked, vec![1]);
    }

    #[test]
    fn select_stops_a_sender_when_its_balance_runs_out() {
        let rich = state(&[(1, 100, 0)]);
        let mut mp = pool();
        mp.admit(tx(1, 0, 40), &rich).unwrap();
        mp.admit(tx(1, 1, 40), &rich).unwrap();
        // The state the block is built on has less money.
        let poorer = state(&[(1, 60, 0)]);
        let picked = mp.select(&poorer, 100, usize::MAX);
        assert_eq!(picked, vec![tx(1, 0, 40)]);
    }

    #[test]
    fn remove_committed_drops_included_and_stale_transactions() {
        let st = state(&[(1, 1000, 0), (2, 1000, 0)]);
        let mut mp = pool();
        for t in [tx(1, 0, 1), tx(1, 1, 1), tx(1, 2, 1), tx(2, 0, 1)] {
            mp.admit(t, &st).unwrap();
        }
        // A block from elsewhere carries a different nonce-1 transaction from
        // sender 1 (and its nonce 0): both of ours become stale.
        let conflicting = tx(1, 1, 7);
        let b = block(vec![tx(1, 0, 1), conflicting]);
        let after = state(&[(1, 990, 2), (2, 1000, 0)]);
        mp.remove_committed(&b);
        let left: Vec<(Address, u64)> = mp.iter().map(|t| (t.from, t.nonce.0)).collect();
        assert_eq!(left, vec![(addr(1), 2), (addr(2), 0)]);
        assert_eq!(mp.bytes(), 2 * encoding::encode(&tx(1, 0, 1)).len());
        assert_eq!(mp.pending_nonce(&addr(1), &after).unwrap(), Nonce(3));
    }

    #[test]
    fn pending_nonce_follows_the_consecutive_run() {
        let st = state(&[(1, 1000, 4)]);
        let mut mp = pool();
        assert_eq!(mp.pending_nonce(&addr(1), &st).unwrap(), Nonce(4));
        mp.admit(tx(1, 4, 1), &st).unwrap();
        mp.admit(tx(1, 5, 1), &st).unwrap();
        mp.admit(tx(1, 7, 1), &st).unwrap();
        assert_eq!(mp.pending_nonce(&addr(1), &st).unwrap(), Nonce(6));
        assert_eq!(mp.pending_nonce(&addr(9), &st).unwrap(), Nonce(0));
    }

    #[test]
    fn snapshot_is_in_arrival_order_and_limited() {
        let st = state(&[(1, 1000, 0), (2, 1000, 0)]);
        let mut mp = pool();
        let a = mp.admit(tx(2, 0, 1), &st).unwrap();
        let b = mp.admit(tx(1, 0, 1), &st).unwrap();
        let c = mp.admit(tx(1, 1, 1), &st).unwrap();
        assert_eq!(mp.snapshot(10), vec![a, b, c]);
        assert_eq!(mp.snapshot(2), vec![a, b]);
    }

    #[test]
    fn batch_verification_names_bad_signatures_and_admit_verified_trusts_it() {
        let st = state(&[(1, 1000, 0)]);
        let mut txs = vec![tx(1, 0, 1), tx(1, 1, 1), tx(1, 2, 1)];
        txs[1].signature = Signature([3; 64]);
        assert_eq!(Mempool::verify_batch(&txs), vec![true, false, true]);
        assert!(Mempool::verify_batch(&[]).is_empty());
        let verdicts = Mempool::verify_batch(&txs);
        let mut mp = pool();
        for (t, ok) in txs.iter().zip(verdicts) {
            if ok {
                mp.admit_verified(t.clone(), t.hash(), Source::Peer, &st)
                    .unwrap();
            }
        }
        assert_eq!(mp.len(), 2);
        // admit_verified does not check the signature again; admit does.
        assert!(
            mp.admit_verified(txs[1].clone(), txs[1].hash(), Source::Peer, &st)
                .is_ok()
        );
        let mut strict = pool();
        assert_eq!(
            strict.admit(txs[1].clone(), &st).unwrap_err().code(),
            "bad_signature"
        );
    }

    #[test]
    fn parallel_verification_gives_each_transaction_its_own_verdict() {
        let mut txs: Vec<Transaction> = (0..200).map(|n| tx(1, n, 1)).collect();
        // Bad ones at both ends and around the chunk boundaries.
        let bad = [0usize, 49, 50, 66, 67, 100, 133, 134, 199];
        for &i in &bad {
            txs[i].signature = Signature([i as u8; 64]);
        }
        let expected: Vec<bool> = (0..200).map(|i| !bad.contains(&i)).collect();
        for threads in [1, 2, 3, 4, 7, 64] {
            assert_eq!(
                Mempool::verify_batch_parallel(&txs, threads),
                expected,
                "{threads} threads"
            );
        }
        assert!(Mempool::verify_batch_parallel(&[], 4).is_empty());
        assert_eq!(
            Mempool::verify_batch_parallel(&txs[..3], 4),
            [false, true, true]
        );
    }

    fn sized(max_txs: usize) -> Mempool {
        Mempool::new(
            MempoolConfig {
                max_txs,
                max_bytes: 1 << 20,
                max_nonce_gap: 8,
            },
            chain(),
        )
    }

    #[test]
    fn a_full_pool_evicts_stuck_transactions_for_a_ready_one() {
        let st = state(&[(1, 1000, 0), (2, 1000, 0), (3, 1000, 0)]);
        // Eight transactions, of which two may be stuck.
        let mut mp = sized(8);
        assert_eq!(mp.max_stuck(), 2);
        // Sender 1's nonces 1 and 2 are stuck above the gap at 0.
        mp.admit(tx(1, 1, 1), &st).unwrap();
        mp.admit(tx(1, 2, 1), &st).unwrap();
        for nonce in 0..6 {
            mp.admit(tx(2, nonce, 1), &st).unwrap();
        }
        assert_eq!((mp.len(), mp.ready(), mp.stuck()), (8, 6, 2));
        // A stuck transaction gets no room.
        assert_eq!(
            mp.admit(tx(3, 4, 1), &st).unwrap_err().code(),
            "mempool_full"
        );
        assert_eq!(mp.evicted(), 0);
        // A ready one does: sender 1's stuck ones go, highest first.
        mp.admit(tx(2, 6, 1), &st).unwrap();
        assert_eq!(mp.evicted(), 2);
        assert_eq!((mp.len(), mp.ready(), mp.stuck()), (7, 7, 0));
        assert!(!mp.contains(&tx(1, 1, 1).hash()));
        assert_eq!(mp.select(&st, 10, 1 << 20).len(), 7);
        // Nothing stuck is left: a full pool refuses as before.
        mp.admit(tx(3, 0, 1), &st).unwrap();
        assert_eq!(
            mp.admit(tx(2, 7, 1), &st).unwrap_err().code(),
            "mempool_full"
        );
    }

    #[test]
    fn stuck_transactions_take_at_most_a_quarter_of_the_pool() {
        let st = state(&[(1, 1000, 0), (2, 1000, 0)]);
        let mut mp = sized(8);
        mp.admit(tx(1, 2, 1), &st).unwrap();
        mp.admit(tx(1, 3, 1), &st).unwrap();
        // Room for six more, but not for a third stuck one.
        assert_eq!(
            mp.admit(tx(2, 1, 1), &st).unwrap_err().code(),
            "mempool_full"
        );
        // A ready one that fills the gap below makes the stuck ones ready.
        mp.admit(tx(2, 0, 1), &st).unwrap();
        mp.admit(tx(1, 0, 1), &st).unwrap();
        assert_eq!(mp.stuck(), 2);
        mp.admit(tx(1, 1, 1), &st).unwrap();
        assert_eq!((mp.stuck(), mp.ready()), (0, 5));
        mp.admit(tx(2, 2, 1), &st).unwrap();
        assert_eq!(mp.stuck(), 1);
    }

    #[test]
    fn a_full_pool_evicts_stuck_transactions_from_peers_but_never_a_clients() {
        let st = state(&[(1, 1000, 0), (2, 1000, 0), (3, 1000, 0)]);
        let mut mp = sized(8);
        let client = tx(1, 2, 1);
        mp.admit_verified(client.clone(), client.hash(), Source::Client, &st)
            .unwrap();
        mp.admit(tx(3, 1, 1), &st).unwrap();
        for nonce in 0..6 {
            mp.admit(tx(2, nonce, 1), &st).unwrap();
        }
        assert_eq!((mp.len(), mp.stuck()), (8, 2));
        // Room for a ready one: the peer's stuck transaction goes.
        mp.admit(tx(2, 6, 1), &st).unwrap();
        assert_eq!(mp.evicted(), 1);
        assert!(!mp.contains(&tx(3, 1, 1).hash()));
        // Only the client's is left stuck: kept, so nothing fits.
        assert_eq!(
            mp.admit(tx(2, 7, 1), &st).unwrap_err().code(),
            "mempool_full"
        );
        assert!(mp.contains(&client.hash()));
        assert_eq!(mp.evicted(), 1);
        // After a commit, and a peer's stuck transaction, a full pool
        // evicts again.
        mp.remove_committed(&block(vec![tx(2, 0, 1)]));
        let after = state(&[(1, 1000, 0), (2, 998, 1), (3, 1000, 0)]);
        mp.note_committed(&after);
        mp.admit(tx(3, 1, 1), &after).unwrap();
        assert_eq!(mp.len(), 8);
        mp.admit(tx(2, 7, 1), &after).unwrap();
        assert_eq!(mp.evicted(), 2);
        assert!(mp.contains(&client.hash()));
    }

    #[test]
    fn a_sender_filling_its_own_gap_keeps_what_it_unblocks() {
        let st = state(&[(1, 1000, 0), (2, 1000, 0)]);
        let mut mp = sized(8);
        mp.admit(tx(1, 0, 1), &st).unwrap();
        mp.admit(tx(1, 2, 1), &st).unwrap();
        mp.admit(tx(1, 3, 1), &st).unwrap();
        for nonce in 0..5 {
            mp.admit(tx(2, nonce, 1), &st).unwrap();
        }
        assert_eq!((mp.len(), mp.stuck()), (8, 2));
        // Full; sender 1's nonce 1 is ready, and its own stuck ones are
        // what it would unblock: not evicted, so it does not fit.
        assert_eq!(
            mp.admit(tx(1, 1, 1), &st).unwrap_err().code(),
            "mempool_full"
        );
        // Another sender's ready transaction evicts them.
        mp.admit(tx(2, 5, 1), &st).unwrap();
        assert_eq!(mp.evicted(), 2);
        assert_eq!((mp.len(), mp.ready()), (7, 7));
    }

    #[test]
    fn ready_counts_follow_admissions_commits_and_gaps() {
        let st = state(&[(1, 1000, 0), (2, 1000, 5)]);
        let mut mp = pool();
        mp.admit(tx(1, 1, 1), &st).unwrap();
        assert_eq!(mp.ready(), 0);
        mp.admit(tx(2, 5, 1), &st).unwrap();
        mp.admit(tx(2, 7, 1), &st).unwrap();
        assert_eq!(mp.ready(), 1);
        // Filling sender 1's gap makes both ready.
        mp.admit(tx(1, 0, 1), &st).unwrap();
        assert_eq!(mp.ready(), 3);
        mp.admit(tx(2, 6, 1), &st).unwrap();
        assert_eq!(mp.ready(), 5);
        // A block takes sender 1's nonce 0 and sender 2's 5 and 6.
        let done = block(vec![tx(1, 0, 1), tx(2, 5, 1), tx(2, 6, 1)]);
        mp.remove_committed(&done);
        assert_eq!((mp.len(), mp.ready()), (2, 2));
        // A transaction committed from elsewhere leaves a gap behind it.
        mp.remove_committed(&block(vec![tx(2, 7, 2)]));
        assert_eq!((mp.len(), mp.ready()), (1, 1));
    }

    #[test]
    fn a_pending_sender_is_checked_against_what_commits_told_the_pool() {
        // The store the admissions are given says balance 10 throughout.
        let st = state(&[(1, 10, 0)]);
        let mut mp = Mempool::new(MempoolConfig::default(), chain());
        mp.admit(tx(1, 0, 5), &st).unwrap();
        // A commit raised the balance to 100 and took no nonce: the pool
        // trusts it for the pending sender, not the store it is given.
        mp.note_committed(&state(&[(1, 100, 0)]));
        mp.admit(tx(1, 1, 50), &st).unwrap();
        // A commit took nonce 0: the pool forgets it and counts the rest
        // from nonce 1 on.
        mp.note_committed(&state(&[(1, 94, 1)]));
        assert!(!mp.contains(&tx(1, 0, 5).hash()));
        assert_eq!((mp.len(), mp.ready()), (1, 1));
        assert_eq!(
            mp.admit(tx(1, 0, 1), &st).unwrap_err().code(),
            "nonce_too_low"
        );
        // A commit that names no pending sender leaves the pool as it is.
        mp.note_committed(&state(&[(2, 5, 3)]));
        assert_eq!(mp.len(), 1);
        // A sender refused (and so with nothing pending) is kept too, and
        // told of the commit that funds it.
        let poor = state(&[(3, 1, 0)]);
        assert_eq!(
            mp.admit(tx(3, 0, 5), &poor).unwrap_err().code(),
            "insufficient_balance"
        );
        mp.note_committed(&state(&[(3, 50, 0)]));
        mp.admit(tx(3, 0, 5), &poor).unwrap();
        assert_eq!(mp.len(), 2);
        // After a revert the store is read again: 60 covers the 51 pending
        // and 8 but not 31 (the 94 kept before would have).
        mp.forget_committed();
        let reverted = state(&[(1, 60, 1)]);
        assert_eq!(
            mp.admit(tx(1, 2, 30), &reverted).unwrap_err().code(),
            "insufficient_balance"
        );
        mp.admit(tx(1, 2, 7), &reverted).unwrap();
        assert_eq!(mp.len(), 3);
    }

    #[test]
    fn stale_ready_transactions_are_handed_out_once_per_wait_in_turns() {
        let st = state(&[(1, 1000, 0), (2, 1000, 0), (3, 1000, 0)]);
        let mut mp = pool();
        for sender in 1..=3 {
            for nonce in 0..3 {
                mp.admit(tx(sender, nonce, 1), &st).unwrap();
            }
        }
        mp.admit(tx(1, 5, 1), &st).unwrap();
        let admitted = Instant::now();
        let later = admitted + std::time::Duration::from_secs(10);
        // Not yet stale.
        assert!(
            mp.take_stale_ready(admitted - std::time::Duration::from_secs(1), later, 2, 100)
                .is_empty()
        );
        // Two per sender, never a stuck one, at most `limit` per call; the
        // next call goes on where the last stopped and skips what it
        // handed out.
        let a_bit_before = later - std::time::Duration::from_secs(1);
        let first = mp.take_stale_ready(later, later, 2, 4);
        let second = mp.take_stale_ready(a_bit_before, later, 2, 4);
        assert_eq!((first.len(), second.len()), (4, 2));
        let mut all: Vec<Hash> = first.iter().chain(&second).map(Transaction::hash).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 6);
        assert!(!all.contains(&tx(1, 5, 1).hash()));
        assert!(first.iter().chain(&second).all(|t| t.nonce.0 < 2));
        // Handed out at `later`: not again until a wait after it.
        let much_later = later + std::time::Duration::from_secs(10);
        assert!(
            mp.take_stale_ready(a_bit_before, much_later, 2, 100)
                .is_empty()
        );
        assert_eq!(mp.take_stale_ready(later, much_later, 2, 100).len(), 6);
    }

    #[test]
    fn gaps_name_the_nonces_missing_below_old_stuck_transactions_in_turns() {
        let st = state(&[(1, 1000, 0), (2, 1000, 3), (3, 1000, 0), (4, 1000, 0)]);
        let mut mp = pool();
        // Sender 1: 0 ready, 1 and 2 missing, 3 and 5 stuck.
        for nonce in [0, 3, 5] {
            mp.admit(tx(1, nonce, 1), &st).unwrap();
        }
        // Sender 2 (committed nonce 3): 3 to 6 missing, 7 stuck.
        mp.admit(tx(2, 7, 1), &st).unwrap();
        // Sender 3: no gap. Sender 4: nothing ready, 0 missing.
        mp.admit(tx(3, 0, 1), &st).unwrap();
        mp.admit(tx(4, 1, 1), &st).unwrap();
        let admitted = Instant::now();
        assert!(
            mp.gaps(admitted - std::time::Duration::from_secs(1), 10)
                .is_empty(),
            "not old yet"
        );
        let later = admitted + std::time::Duration::from_secs(1);
        let all = mp.gaps(later, 10);
        let gap = |sender: u8, from: u64, count: u32| Gap {
            sender: addr(sender),
            from: Nonce(from),
            count,
        };
        let mut want = vec![gap(1, 1, 2), gap(2, 3, 4), gap(4, 0, 1)];
        want.sort_by_key(|g| g.sender);
        assert_eq!(all, want);
        // At most `limit`, going on where the last call stopped.
        let first = mp.gaps(later, 2);
        let second = mp.gaps(later, 2);
        assert_eq!((first.len(), second.len()), (2, 2));
        assert_eq!(second[0], want[2]);
        assert_eq!(second[1], want[0]);

        // A peer answers with what it holds in the gap, in nonce order.
        let mut peer = pool();
        for nonce in [0, 1, 2, 3] {
            peer.admit(tx(1, nonce, 1), &st).unwrap();
        }
        let held: Vec<Nonce> = peer.filling(&gap(1, 1, 2)).map(|t| t.nonce).collect();
        assert_eq!(held, vec![Nonce(1), Nonce(2)]);
        assert_eq!(peer.filling(&gap(2, 3, 4)).count(), 0);
        assert_eq!(peer.filling(&gap(1, u64::MAX, u32::MAX)).count(), 0);

        // Filled, the gap moves up to the next one.
        for t in peer.filling(&gap(1, 1, 2)).cloned().collect::<Vec<_>>() {
            mp.admit(t, &st).unwrap();
        }
        let now = mp.gaps(later, 10);
        assert!(now.contains(&gap(1, 4, 1)), "{now:?}");
        assert_eq!(now.len(), 3);
    }
}
