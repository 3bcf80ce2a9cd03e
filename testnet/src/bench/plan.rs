//! The workload of a run, signed before it starts: who sends which
//! transaction, when it is due, and the hash that finds it again in a
//! block.
//!
//! Transaction k (k = 0, 1, ...) is due `k / tps` seconds after the run's
//! origin, and is account `k mod K`'s transfer number `k div K` (nonce: the
//! account's first nonce plus that number), 1 unit with a fee of 1 to a
//! fixed address. Accounts take turns, so each sends `tps / K`
//! transactions a second.
//!
//! Memory stays compact at a million transactions and more: per
//! transaction only its signature (64 bytes) and a 12-byte index entry
//! (the first 8 bytes of its hash, and k) are kept; the rest of the
//! transaction is rebuilt from the account when it is sent, and a hash
//! found in a block is confirmed by rebuilding the transaction and hashing
//! it again.

use crate::local::net::Network;
use anyhow::{Context, anyhow};
use indicatif::{ProgressBar, ProgressStyle};
use phalanx_chain::{Address, Amount, ChainId, Hash, Nonce, Transaction};
use phalanx_crypto::{Keypair, Signature};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Transactions one run may plan, at most.
pub const MAX_PLANNED: u64 = 2_000_000;
/// `--tps` above this is refused.
pub const MAX_TPS: f64 = 100_000.0;
/// `--duration` above this (seconds) is refused.
pub const MAX_DURATION_S: u64 = 3_600;
/// Signing threads report progress every this many transactions.
const PROGRESS_EVERY: u64 = 1_024;

/// A sending account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    pub address: Address,
    /// The nonce of its first transaction in the workload.
    pub first_nonce: u64,
}

/// Signing was called off ([`Workload::sign`]'s `cancel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("signing was interrupted")]
pub struct Cancelled;

/// Every transaction of a run, signed.
#[derive(Debug)]
pub struct Workload {
    chain_id: ChainId,
    sink: Address,
    tps: f64,
    accounts: Vec<Account>,
    signatures: Vec<Signature>,
    /// (the first 8 bytes of the hash as a little-endian u64, k), sorted.
    index: Vec<(u64, u32)>,
}

/// Transactions due within `secs` seconds at `tps` (k / tps < secs), at
/// least 1.
pub fn planned(tps: f64, secs: f64) -> u64 {
    // A product that lands on a whole number up to rounding stays whole.
    ((tps * secs) - 1e-9).ceil().max(1.0) as u64
}

/// Refuses a `--tps` or `--duration` that makes no sense.
pub fn check_rate(tps: f64, duration_s: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        tps.is_finite() && tps > 0.0 && tps <= MAX_TPS,
        "--tps must be above 0 and at most {MAX_TPS}"
    );
    anyhow::ensure!(
        (1..=MAX_DURATION_S).contains(&duration_s),
        "--duration must be between 1 and {MAX_DURATION_S} seconds"
    );
    Ok(())
}

/// Where the transactions go: a fixed address no one holds the key of.
fn sink() -> Address {
    Address::from(Keypair::from_seed(&[0x5b; 32]).public())
}

fn prefix(hash: &Hash) -> u64 {
    hash.0
        .first_chunk::<8>()
        .map_or(0, |b| u64::from_le_bytes(*b))
}

impl Workload {
    /// Signs `count` transactions from `keys` (with their first nonces),
    /// due at `tps`, on every core. `progress` counts the transactions
    /// signed; `cancel` turning true stops the work.
    pub fn sign(
        chain_id: &ChainId,
        keys: &[(Keypair, u64)],
        tps: f64,
        count: u32,
        progress: &AtomicU64,
        cancel: &AtomicBool,
    ) -> Result<Workload, Cancelled> {
        let sink = sink();
        let accounts: Vec<Account> = keys
            .iter()
            .map(|(key, first_nonce)| Account {
                address: Address::from(key.public()),
                first_nonce: *first_nonce,
            })
            .collect();
        let mut signatures = vec![Signature([0; 64]); count as usize];
        let mut index = vec![(0u64, 0u32); count as usize];
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = (count as usize).div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            for (c, (sigs, idx)) in signatures
                .chunks_mut(chunk)
                .zip(index.chunks_mut(chunk))
                .enumerate()
            {
                let first = (c * chunk) as u32;
                scope.spawn(move || {
                    let len = sigs.len() as u64;
                    for (i, (sig, entry)) in sigs.iter_mut().zip(idx.iter_mut()).enumerate() {
                        let done = i as u64;
                        if done.is_multiple_of(PROGRESS_EVERY) {
                            if cancel.load(Ordering::Relaxed) {
                                return;
                            }
                            progress.fetch_add(PROGRESS_EVERY.min(len - done), Ordering::Relaxed);
                        }
                        let k = first + i as u32;
                        let Some(tx) = sign_one(chain_id, keys, sink, k) else {
                            continue;
                        };
                        *sig = tx.signature;
                        *entry = (prefix(&tx.hash()), k);
                    }
                });
            }
        });
        if cancel.load(Ordering::Relaxed) {
            return Err(Cancelled);
        }
        index.sort_unstable();
        Ok(Workload {
            chain_id: chain_id.clone(),
            sink,
            tps,
            accounts,
            signatures,
            index,
        })
    }

    /// Transactions in the workload.
    pub fn len(&self) -> u32 {
        self.signatures.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.signatures.is_empty()
    }

    pub fn tps(&self) -> f64 {
        self.tps
    }

    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    /// The account that sends transaction `k`.
    pub fn account_of(&self, k: u32) -> usize {
        k as usize % self.accounts.len().max(1)
    }

    /// Transaction `seq` of account `account` (its k).
    pub fn tx_index(&self, account: usize, seq: u32) -> u32 {
        seq.saturating_mul(self.accounts.len() as u32)
            .saturating_add(account as u32)
    }

    /// When transaction `k` is due, in ms from the origin.
    pub fn due_ms(&self, k: u32) -> u64 {
        (f64::from(k) * 1_000.0 / self.tps) as u64
    }

    /// How many transactions are due `at_ms` after the origin.
    pub fn due(&self, at_ms: u64) -> u32 {
        let due = (at_ms as f64 * self.tps / 1_000.0).floor() as u64 + 1;
        due.min(u64::from(self.len())) as u32
    }

    /// How many of the first `due` transactions `account` sends.
    pub fn account_due(&self, account: usize, due: u32) -> u32 {
        let n = self.accounts.len() as u32;
        let a = account as u32;
        if n == 0 || due <= a {
            0
        } else {
            (due - a).div_ceil(n)
        }
    }

    /// Transaction `k`, rebuilt.
    pub fn tx(&self, k: u32) -> Option<Transaction> {
        let account = self.accounts.get(self.account_of(k))?;
        let seq = k / self.accounts.len().max(1) as u32;
        Some(Transaction {
            chain_id: self.chain_id.clone(),
            from: account.address,
            to: self.sink,
            amount: Amount(1),
            fee: Amount(1),
            nonce: Nonce(account.first_nonce + u64::from(seq)),
            signature: *self.signatures.get(k as usize)?,
        })
    }

    /// The k of the transaction with hash `hash`, if it is one of ours.
    pub fn find(&self, hash: &Hash) -> Option<u32> {
        let p = prefix(hash);
        let from = self.index.partition_point(|(q, _)| *q < p);
        self.index
            .get(from..)?
            .iter()
            .take_while(|(q, _)| *q == p)
            .map(|(_, k)| *k)
            .find(|k| self.tx(*k).is_some_and(|tx| tx.hash() == *hash))
    }
}

fn sign_one(
    chain_id: &ChainId,
    keys: &[(Keypair, u64)],
    sink: Address,
    k: u32,
) -> Option<Transaction> {
    let n = keys.len();
    let (key, first_nonce) = keys.get(k as usize % n.max(1))?;
    let seq = u64::from(k) / n.max(1) as u64;
    Some(Transaction::sign(
        key,
        chain_id.clone(),
        sink,
        Amount(1),
        Amount(1),
        Nonce(first_nonce + seq),
    ))
}

/// The keys of `net`'s first `count` funded accounts (`accounts/<j>.json`).
pub fn account_keys(net: &Network, count: usize) -> anyhow::Result<Vec<Keypair>> {
    let files = net.account_files();
    anyhow::ensure!(
        !files.is_empty(),
        "no funded accounts in {}",
        net.accounts_dir().display()
    );
    anyhow::ensure!(
        (1..=files.len()).contains(&count),
        "--accounts must be between 1 and {} (the funded accounts in {})",
        files.len(),
        net.accounts_dir().display()
    );
    files
        .iter()
        .take(count)
        .map(|file| {
            phalanx_crypto::keyfile::load_key_file(file)
                .map(|k| k.keypair)
                .with_context(|| format!("reading {}", file.display()))
        })
        .collect()
}

/// [`Workload::sign`] on a blocking thread, with a progress bar; `cancel`
/// turning true (set it when the caller gives up) stops the signing.
pub async fn sign_with_progress(
    chain_id: ChainId,
    keys: Vec<(Keypair, u64)>,
    tps: f64,
    count: u32,
    cancel: &Arc<AtomicBool>,
) -> anyhow::Result<Workload> {
    let progress = Arc::new(AtomicU64::new(0));
    let (p, c) = (Arc::clone(&progress), Arc::clone(cancel));
    let mut signing =
        tokio::task::spawn_blocking(move || Workload::sign(&chain_id, &keys, tps, count, &p, &c));
    let bar = ProgressBar::new(u64::from(count));
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} signing [{bar:30}] {pos}/{len} transactions, {eta} left",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let result = loop {
        tokio::select! {
            done = &mut signing => break done,
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                bar.set_position(progress.load(Ordering::Relaxed).min(u64::from(count)));
            }
        }
    };
    bar.finish_and_clear();
    match result {
        Ok(Ok(workload)) => Ok(workload),
        Ok(Err(Cancelled)) => Err(anyhow!("interrupted while signing")),
        Err(e) => Err(anyhow!("the signing threads failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(accounts: u8, tps: f64, count: u32) -> Workload {
        let keys: Vec<(Keypair, u64)> = (0..accounts)
            .map(|a| (Keypair::from_seed(&[a + 1; 32]), u64::from(a) * 10))
            .collect();
        let chain = ChainId::new("phalanx-plan-test").unwrap();
        let progress = AtomicU64::new(0);
        Workload::sign(
            &chain,
            &keys,
            tps,
            count,
            &progress,
            &AtomicBool::new(false),
        )
        .unwrap()
    }

    #[test]
    fn the_rate_schedule_is_steady() {
        assert_eq!(planned(2_000.0, 20.0), 40_000);
        assert_eq!(planned(50.0, 4.0), 200);
        assert_eq!(planned(0.5, 3.0), 2);
        assert_eq!(planned(0.1, 1.0), 1);
        let w = workload(3, 100.0, 50);
        assert_eq!(w.due(0), 1);
        assert_eq!(w.due(9), 1);
        assert_eq!(w.due(10), 2);
        assert_eq!(w.due(105), 11);
        assert_eq!(w.due(1_000_000), 50);
        assert_eq!(w.due_ms(11), 110);
        // Accounts take turns: account 1 sends k = 1, 4, 7, ...
        assert_eq!(w.account_of(7), 1);
        assert_eq!(w.tx_index(1, 2), 7);
        assert_eq!(w.account_due(0, 0), 0);
        assert_eq!(w.account_due(0, 1), 1);
        assert_eq!(w.account_due(1, 1), 0);
        assert_eq!(w.account_due(1, 8), 3);
        assert_eq!(w.account_due(2, 8), 2);
        let total: u32 = (0..3).map(|a| w.account_due(a, 50)).sum();
        assert_eq!(total, 50);
    }

    #[test]
    fn every_transaction_is_signed_and_found_by_its_hash() {
        let w = workload(4, 1_000.0, 3_000);
        assert_eq!(w.len(), 3_000);
        for k in [0, 1, 2_047, 2_999] {
            let tx = w.tx(k).unwrap();
            assert_eq!(tx.verify_signature(), Ok(()));
            let account = w.account_of(k);
            assert_eq!(tx.from, w.accounts()[account].address);
            assert_eq!(tx.nonce.0, account as u64 * 10 + u64::from(k) / 4);
            assert_eq!(w.find(&tx.hash()), Some(k));
        }
        assert_eq!(w.find(&Hash([9; 32])), None);
        assert!(w.tx(3_000).is_none());
    }

    #[test]
    fn signing_stops_when_cancelled() {
        let keys = vec![(Keypair::from_seed(&[1; 32]), 0)];
        let chain = ChainId::new("phalanx-plan-test").unwrap();
        let cancel = AtomicBool::new(true);
        let progress = AtomicU64::new(0);
        let result = Workload::sign(&chain, &keys, 10.0, 5_000, &progress, &cancel);
        assert_eq!(result.unwrap_err(), Cancelled);
    }
}
