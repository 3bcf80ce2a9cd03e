//! The mempool against a simple model: random admissions (honest, forged,
//! wrong chain, gapped, duplicate, through `admit` or the batch path),
//! block building from `select`, and blocks from elsewhere. After every
//! step the bounds hold and the mempool holds exactly what the model
//! predicts; every selection applies to the state (checked by the ledger's
//! own `BlockBuilder`), is per sender a consecutive run from the sender's
//! nonce, never overdraws a balance, and stops only for a reason.
//!
//! Prints its seed; `PHALANX_SEED=<n>` replays a run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../../chain/src/test_seed.rs"]
mod test_seed;

use phalanx_chain::{
    Account, Address, Amount, Block, BlockBuilder, BlockHeader, ChainId, Hash, Height,
    Justification, Nonce, Rules, StateAccumulator, Transaction, encoding,
};
use phalanx_crypto::{Keypair, Signature};
use phalanx_node::mempool::{Mempool, MempoolConfig, Source};
use proptest::prelude::*;
use std::collections::BTreeMap;

const SENDERS: u8 = 4;
const CONFIG: MempoolConfig = MempoolConfig {
    max_txs: 10,
    max_bytes: 1_200,
    max_nonce_gap: 3,
};

fn chain() -> ChainId {
    ChainId::new("mempool-prop").unwrap()
}

fn key(i: u8) -> Keypair {
    Keypair::from_seed(&[i + 1; 32])
}

fn addr(i: u8) -> Address {
    key(i).public().into()
}

const PROPOSER: Address = Address([0xee; 32]);

#[derive(Debug, Clone)]
enum Op {
    Admit {
        sender: u8,
        /// Relative to the sender's nonce in the state.
        nonce_offset: i8,
        amount: u64,
        fee: u64,
        to: u8,
        forged: bool,
        wrong_chain: bool,
        batch: bool,
    },
    /// Re-submit a pending transaction.
    Resubmit { pick: usize },
    /// Build and commit a block from `select`.
    Build { max_txs: usize, max_bytes: usize },
    /// Commit a block from elsewhere: one transfer by `sender` at its nonce.
    Foreign { sender: u8, amount: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..SENDERS, -2i8..6, 0u64..90, 0u64..3, 0..SENDERS + 1, prop::bool::weighted(0.1),
              prop::bool::weighted(0.05), any::<bool>())
            .prop_map(|(sender, nonce_offset, amount, fee, to, forged, wrong_chain, batch)| Op::Admit {
                sender, nonce_offset, amount, fee, to, forged, wrong_chain, batch,
            }),
        1 => (0usize..100).prop_map(|pick| Op::Resubmit { pick }),
        2 => (0usize..8, 0usize..1_600).prop_map(|(max_txs, max_bytes)| Op::Build { max_txs, max_bytes }),
        1 => (0..SENDERS, 0u64..50).prop_map(|(sender, amount)| Op::Foreign { sender, amount }),
    ]
}

fn size(tx: &Transaction) -> usize {
    encoding::encode(tx).len()
}

fn cost(tx: &Transaction) -> u128 {
    u128::from(tx.amount.0) + u128::from(tx.fee.0)
}

struct Model {
    state: BTreeMap<Address, Account>,
    /// Pending transactions in arrival order.
    pending: Vec<Transaction>,
    /// Stuck transactions evicted so far.
    evicted: u64,
}

impl Model {
    fn account(&self, a: &Address) -> Account {
        self.state.get(a).copied().unwrap_or_default()
    }

    /// The code the mempool should answer `tx` with (None: admitted), after
    /// evicting what the mempool should evict to make room for it.
    fn expected(&mut self, tx: &Transaction, signature_ok: bool) -> Option<&'static str> {
        let account = self.account(&tx.from);
        if tx.chain_id != chain() {
            return Some("wrong_chain");
        }
        if self.pending.iter().any(|p| p.hash() == tx.hash()) {
            return Some("duplicate");
        }
        if !signature_ok {
            return Some("bad_signature");
        }
        if tx.nonce < account.nonce {
            return Some("nonce_too_low");
        }
        if tx.nonce.0 - account.nonce.0 > CONFIG.max_nonce_gap {
            return Some("nonce_gap");
        }
        let mine = || self.pending.iter().filter(|p| p.from == tx.from);
        if mine().any(|p| p.nonce == tx.nonce) {
            return Some("nonce_pending");
        }
        let earlier: u128 = mine()
            .filter(|p| p.nonce >= account.nonce && p.nonce < tx.nonce)
            .map(cost)
            .sum();
        if earlier + cost(tx) > u128::from(account.balance.0) {
            return Some("insufficient_balance");
        }
        // Stuck transactions (above a gap) may take a quarter of the pool.
        let ready = tx.nonce == self.pending_nonce(&tx.from);
        if !ready && self.pending.len() - self.ready() >= (CONFIG.max_txs / 4).max(1) {
            return Some("mempool_full");
        }
        let full = |pending: &[Transaction]| {
            let bytes: usize = pending.iter().map(size).sum();
            pending.len() >= CONFIG.max_txs || bytes + size(tx) > CONFIG.max_bytes
        };
        if !full(&self.pending) {
            return None;
        }
        // Full: a transaction a block could take evicts, sender by sender
        // in address order (never its own sender), every transaction above
        // a gap, until it fits.
        if !ready {
            return Some("mempool_full");
        }
        let mut others: Vec<Address> = (0..SENDERS).map(addr).filter(|a| *a != tx.from).collect();
        others.sort();
        for sender in others {
            let next = self.pending_nonce(&sender);
            let before = self.pending.len();
            self.pending
                .retain(|p| !(p.from == sender && p.nonce > next));
            if self.pending.len() == before {
                continue;
            }
            self.evicted += (before - self.pending.len()) as u64;
            if !full(&self.pending) {
                return None;
            }
        }
        Some("mempool_full")
    }

    /// Ready transactions: each sender's consecutive run from its nonce.
    fn ready(&self) -> usize {
        (0..SENDERS)
            .map(addr)
            .map(|a| (self.pending_nonce(&a).0 - self.account(&a).nonce.0) as usize)
            .sum()
    }

    fn pending_nonce(&self, sender: &Address) -> Nonce {
        let mut next = self.account(sender).nonce;
        while self
            .pending
            .iter()
            .any(|p| p.from == *sender && p.nonce == next)
        {
            next = Nonce(next.0 + 1);
        }
        next
    }

    /// Commits `block` (which must apply) and forgets what it made stale.
    fn commit(&mut self, block: &Block, changes: &BTreeMap<Address, Account>) {
        for (a, account) in changes {
            self.state.insert(*a, *account);
        }
        let included: Vec<Hash> = block.tx_hashes();
        let senders: Vec<Address> = block.transactions.iter().map(|t| t.from).collect();
        let state = &self.state;
        self.pending.retain(|p| {
            let stale = senders.contains(&p.from)
                && p.nonce < state.get(&p.from).copied().unwrap_or_default().nonce;
            !included.contains(&p.hash()) && !stale
        });
    }
}

fn parent() -> BlockHeader {
    BlockHeader {
        height: Height(0),
        parent: Hash::ZERO,
        tx_root: Hash::ZERO,
        state_root: Hash::ZERO,
        timestamp_ms: 0,
        proposer: PROPOSER,
        justification: Justification::Genesis,
    }
}

/// Builds a block of `txs` on `state` with the ledger's own rules; every
/// transaction must apply.
fn build(
    state: &BTreeMap<Address, Account>,
    txs: &[Transaction],
) -> (Block, BTreeMap<Address, Account>) {
    let parent = parent();
    let accumulator = StateAccumulator::from_accounts(state.iter());
    let mut builder =
        BlockBuilder::new(Rules::new(chain()), &parent, state, &accumulator, PROPOSER);
    for tx in txs {
        if let Err(e) = builder.push(tx.clone()) {
            panic!("selected transaction does not apply: {e}: {tx:?}");
        }
    }
    let (block, changes) = builder.finish(1, Justification::Genesis).unwrap();
    (block, changes.accounts)
}

fn check_selection(
    mempool: &Mempool,
    model: &Model,
    selected: &[Transaction],
    max_txs: usize,
    max_bytes: usize,
) {
    assert!(selected.len() <= max_txs);
    let total: usize = selected.iter().map(size).sum();
    assert!(total <= max_bytes, "{total} > {max_bytes}");
    let mut runs: BTreeMap<Address, (Nonce, u128)> = BTreeMap::new();
    for tx in selected {
        assert!(
            mempool.contains(&tx.hash()),
            "selected a transaction that is not pending"
        );
        let account = model.account(&tx.from);
        let (next, spent) = runs.entry(tx.from).or_insert((account.nonce, 0));
        assert_eq!(tx.nonce, *next, "not the sender's next nonce");
        *next = Nonce(next.0 + 1);
        *spent += cost(tx);
        assert!(
            *spent <= u128::from(account.balance.0),
            "overdraws {}",
            tx.from
        );
    }
    // If the transaction limit was not reached, each sender stopped for a
    // reason: no next transaction, no money for it, or no room in bytes.
    if selected.len() < max_txs {
        for sender in (0..SENDERS).map(addr) {
            let account = model.account(&sender);
            let (next, spent) = runs.get(&sender).copied().unwrap_or((account.nonce, 0));
            let Some(tx) = model
                .pending
                .iter()
                .find(|p| p.from == sender && p.nonce == next)
            else {
                continue;
            };
            let unaffordable = spent + cost(tx) > u128::from(account.balance.0);
            let too_big = total + size(tx) > max_bytes;
            assert!(unaffordable || too_big, "select left out {tx:?}");
        }
    }
}

fn check_invariants(mempool: &Mempool, model: &Model) {
    assert!(mempool.len() <= CONFIG.max_txs);
    assert!(mempool.bytes() <= CONFIG.max_bytes);
    assert_eq!(mempool.len(), model.pending.len());
    assert_eq!(mempool.ready(), model.ready(), "ready transactions");
    assert_eq!(mempool.evicted(), model.evicted, "evicted transactions");
    assert_eq!(
        mempool.bytes(),
        model.pending.iter().map(size).sum::<usize>()
    );
    let hashes: Vec<Hash> = model.pending.iter().map(Transaction::hash).collect();
    assert_eq!(mempool.snapshot(usize::MAX), hashes, "arrival order");
    for sender in (0..SENDERS).map(addr) {
        let held = model.pending.iter().filter(|p| p.from == sender).count() as u64;
        assert!(held <= CONFIG.max_nonce_gap + 1);
        assert_eq!(
            mempool.pending_nonce(&sender, &model.state).unwrap(),
            model.pending_nonce(&sender)
        );
    }
}

fn admit(mempool: &mut Mempool, model: &mut Model, tx: Transaction, batch: bool) {
    let signature_ok = tx.verify_signature().is_ok();
    let expected = model.expected(&tx, signature_ok);
    let got = if batch {
        // The gossip path: verify in a batch outside the lock, admit the
        // ones that pass.
        let verdict = Mempool::verify_batch(std::slice::from_ref(&tx));
        assert_eq!(verdict, vec![signature_ok]);
        if signature_ok {
            mempool.admit_verified(tx.clone(), tx.hash(), Source::Peer, &model.state)
        } else {
            mempool.admit(tx.clone(), &model.state)
        }
    } else {
        mempool.admit(tx.clone(), &model.state)
    };
    match (got, expected) {
        (Ok(hash), None) => {
            assert_eq!(hash, tx.hash());
            model.pending.push(tx);
        }
        (Err(e), Some(code)) => assert_eq!(e.code(), code, "{e}"),
        (got, expected) => panic!("admitting {tx:?}: got {got:?}, the model expects {expected:?}"),
    }
}

fn run(balances: Vec<u64>, ops: Vec<Op>) {
    let mut model = Model {
        state: (0..SENDERS)
            .zip(balances)
            .map(|(i, b)| {
                (
                    addr(i),
                    Account {
                        balance: Amount(b),
                        nonce: Nonce(0),
                    },
                )
            })
            .collect(),
        pending: Vec::new(),
        evicted: 0,
    };
    let mut mempool = Mempool::new(CONFIG, chain());
    for op in ops {
        match op {
            Op::Admit {
                sender,
                nonce_offset,
                amount,
                fee,
                to,
                forged,
                wrong_chain,
                batch,
            } => {
                let base = model.account(&addr(sender)).nonce.0;
                let nonce = base.saturating_add_signed(i64::from(nonce_offset));
                let to = if to == SENDERS {
                    Address([0xaa; 32])
                } else {
                    addr(to)
                };
                let chain_id = if wrong_chain {
                    ChainId::new("other").unwrap()
                } else {
                    chain()
                };
                let mut tx = Transaction::sign(
                    &key(sender),
                    chain_id,
                    to,
                    Amount(amount),
                    Amount(fee),
                    Nonce(nonce),
                );
                if forged {
                    tx.signature = Signature([nonce as u8; 64]);
                }
                admit(&mut mempool, &mut model, tx, batch);
            }
            Op::Resubmit { pick } => {
                if !model.pending.is_empty() {
                    let tx = model.pending[pick % model.pending.len()].clone();
                    admit(&mut mempool, &mut model, tx, false);
                }
            }
            Op::Build { max_txs, max_bytes } => {
                let selected = mempool.select(&model.state, max_txs, max_bytes);
                check_selection(&mempool, &model, &selected, max_txs, max_bytes);
                let (block, changes) = build(&model.state, &selected);
                model.commit(&block, &changes);
                mempool.remove_committed(&block);
                mempool.note_committed(&changes);
            }
            Op::Foreign { sender, amount } => {
                let account = model.account(&addr(sender));
                if u128::from(amount) + 1 > u128::from(account.balance.0) {
                    continue;
                }
                let tx = Transaction::sign(
                    &key(sender),
                    chain(),
                    Address([0xbb; 32]),
                    Amount(amount),
                    Amount(1),
                    account.nonce,
                );
                let (block, changes) = build(&model.state, &[tx]);
                model.commit(&block, &changes);
                mempool.remove_committed(&block);
                mempool.note_committed(&changes);
            }
        }
        check_invariants(&mempool, &model);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..test_seed::config() })]

    #[test]
    fn mempool_matches_its_model(
        balances in proptest::collection::vec(0u64..300, SENDERS as usize),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        run(balances, ops);
    }
}

#[test]
fn a_full_round_of_each_kind_of_step() {
    // A fixed run touching every path, so a regression shows without luck.
    let ops = vec![
        Op::Admit {
            sender: 0,
            nonce_offset: 0,
            amount: 10,
            fee: 1,
            to: 1,
            forged: false,
            wrong_chain: false,
            batch: false,
        },
        Op::Admit {
            sender: 0,
            nonce_offset: 1,
            amount: 10,
            fee: 1,
            to: 1,
            forged: false,
            wrong_chain: false,
            batch: true,
        },
        Op::Admit {
            sender: 0,
            nonce_offset: 3,
            amount: 10,
            fee: 1,
            to: 1,
            forged: false,
            wrong_chain: false,
            batch: false,
        },
        Op::Admit {
            sender: 1,
            nonce_offset: 0,
            amount: 500,
            fee: 1,
            to: 0,
            forged: false,
            wrong_chain: false,
            batch: false,
        },
        Op::Admit {
            sender: 1,
            nonce_offset: 0,
            amount: 5,
            fee: 1,
            to: 0,
            forged: true,
            wrong_chain: false,
            batch: true,
        },
        Op::Admit {
            sender: 2,
            nonce_offset: 0,
            amount: 5,
            fee: 1,
            to: 0,
            forged: false,
            wrong_chain: true,
            batch: false,
        },
        Op::Admit {
            sender: 2,
            nonce_offset: 5,
            amount: 5,
            fee: 1,
            to: 0,
            forged: false,
            wrong_chain: false,
            batch: false,
        },
        Op::Resubmit { pick: 0 },
        Op::Build {
            max_txs: 1,
            max_bytes: 10_000,
        },
        Op::Foreign {
            sender: 0,
            amount: 3,
        },
        Op::Build {
            max_txs: 10,
            max_bytes: 10_000,
        },
    ];
    run(vec![100, 100, 100, 100], ops);
}
