//! Transactions whose signatures this process has already checked.
//!
//! A transaction's hash covers its signing bytes and its signature (see
//! [`Transaction::hash`]), so a hash in this set names exactly one
//! (signature, key, message) triple that verified. Admission to the
//! mempool records what it verified; block building and validation then
//! skip the signatures of the transactions recorded here, so a transaction
//! is verified once per node rather than on admission and again in each
//! block that carries it. That is sound only because every verification
//! path accepts exactly the same signatures (single and batch: see
//! `phalanx_crypto::batch`).
//!
//! The set is bounded: past [`VerifiedTxs::capacity`] the oldest entries
//! are forgotten (a forgotten transaction is simply verified again).

use crate::fifo::FifoMap;
use crate::tx::Transaction;
use phalanx_crypto::Hash;
use std::sync::{Mutex, MutexGuard};

/// Hashes remembered by default: several seconds of transactions at the
/// node's highest rates, about 12 MiB (a table of 2^18 buckets and a
/// queue of 2^17 slots).
pub const DEFAULT_VERIFIED_TXS: usize = 131_072;

/// A bounded set of the hashes of transactions whose signatures verified.
#[derive(Debug)]
pub struct VerifiedTxs {
    inner: Mutex<FifoMap<()>>,
}

impl Default for VerifiedTxs {
    fn default() -> Self {
        VerifiedTxs::new(DEFAULT_VERIFIED_TXS)
    }
}

impl VerifiedTxs {
    /// An empty set of at most `capacity` hashes (at least one).
    pub fn new(capacity: usize) -> VerifiedTxs {
        VerifiedTxs {
            inner: Mutex::new(FifoMap::new(capacity)),
        }
    }

    pub fn capacity(&self) -> usize {
        self.lock().capacity()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.lock().contains(hash)
    }

    /// For each hash, whether it is in the set (one lock for all).
    pub fn contains_each(&self, hashes: &[Hash]) -> Vec<bool> {
        let inner = self.lock();
        hashes.iter().map(|h| inner.contains(h)).collect()
    }

    /// Records hashes of transactions whose signatures verified.
    pub fn insert_all(&self, hashes: impl IntoIterator<Item = Hash>) {
        let mut inner = self.lock();
        for hash in hashes {
            inner.insert(hash, ());
        }
    }

    /// Whether each of `txs` (with `hashes[i]` the hash of `txs[i]`) has a
    /// valid signature: recorded ones are taken as valid, the others are
    /// verified in one batch and recorded if valid.
    pub fn check(&self, txs: &[Transaction], hashes: &[Hash]) -> Vec<bool> {
        let known = self.contains_each(hashes);
        let unchecked: Vec<usize> = known
            .iter()
            .enumerate()
            .filter_map(|(i, known)| (!known).then_some(i))
            .collect();
        let mut valid = vec![true; txs.len()];
        if unchecked.is_empty() {
            return valid;
        }
        let batch: Vec<&Transaction> = unchecked.iter().filter_map(|&i| txs.get(i)).collect();
        let verdicts = verify_on_all_cores(&batch);
        let mut newly = Vec::with_capacity(unchecked.len());
        for (&i, ok) in unchecked.iter().zip(verdicts) {
            if let Some(slot) = valid.get_mut(i) {
                *slot = ok;
            }
            if ok && let Some(hash) = hashes.get(i) {
                newly.push(*hash);
            }
        }
        self.insert_all(newly);
        valid
    }

    fn lock(&self) -> MutexGuard<'_, FifoMap<()>> {
        // The set holds no invariant a panic elsewhere could break.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// [`Transaction::verify_batch`] on all of the machine's cores (block
/// validation runs on the node's consensus task: this shortens its
/// critical path when the machine has idle cores).
fn verify_on_all_cores(txs: &[&Transaction]) -> Vec<bool> {
    verify_batch_parallel(txs, cores())
}

/// Threads that signature checks are split over: the limit set with
/// [`set_threads`], else the machine's cores (as the process may use
/// them), read once: `available_parallelism` reads the cgroup's files on
/// every call, which cost a validator 2.6 % of its CPU at 1,000 tx/s when
/// asked per batch.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    match THREADS.load(std::sync::atomic::Ordering::Relaxed) {
        0 => *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from)),
        limit => limit,
    }
}

/// The limit [`set_threads`] set (0: none).
static THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Splits this process's signature checks over at most `threads` threads
/// (0: every core), for the whole process: a node sets it once from its
/// config (`mempool.verify_threads`).
pub fn set_threads(threads: usize) {
    THREADS.store(threads, std::sync::atomic::Ordering::Relaxed);
}

/// [`Transaction::verify_batch`] split into one batch per thread, on up to
/// `threads` scoped threads (it blocks until all are done). Small inputs
/// stay on the calling thread. `result[i]` says whether `txs[i]` is valid;
/// a thread that panics counts its transactions invalid.
pub fn verify_batch_parallel(txs: &[&Transaction], threads: usize) -> Vec<bool> {
    /// Below this many signatures per thread, one thread is quicker.
    const MIN_PER_THREAD: usize = 64;
    let threads = threads.min(txs.len() / MIN_PER_THREAD).max(1);
    // Ideal signatures (the simulator's) are known to this thread only.
    if threads == 1 || phalanx_crypto::memo::ideal() {
        return Transaction::verify_batch(txs);
    }
    let chunk = txs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = txs
            .chunks(chunk)
            .map(|part| (part.len(), scope.spawn(|| Transaction::verify_batch(part))))
            .collect();
        workers
            .into_iter()
            .flat_map(|(len, worker)| worker.join().unwrap_or_else(|_| vec![false; len]))
            .collect()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::types::{Amount, Nonce};
    use phalanx_crypto::{ChainId, Keypair, Signature};

    fn txs(n: u64) -> Vec<Transaction> {
        let key = Keypair::from_seed(&[5; 32]);
        (0..n)
            .map(|i| {
                Transaction::sign(
                    &key,
                    ChainId::new("verified-test").unwrap(),
                    Keypair::from_seed(&[6; 32]).public().into(),
                    Amount(i + 1),
                    Amount(1),
                    Nonce(i),
                )
            })
            .collect()
    }

    #[test]
    fn a_thread_limit_applies_and_zero_means_every_core() {
        // Other tests may read the limit meanwhile: any count verifies alike.
        set_threads(3);
        assert_eq!(cores(), 3);
        set_threads(0);
        assert_eq!(
            cores(),
            std::thread::available_parallelism().map_or(1, usize::from)
        );
    }

    #[test]
    fn a_large_check_split_over_cores_names_each_bad_signature() {
        let mut txs = txs(300);
        let bad = [0usize, 63, 64, 149, 150, 151, 299];
        for &i in &bad {
            txs[i].signature = Signature([i as u8; 64]);
        }
        let hashes: Vec<Hash> = txs.iter().map(Transaction::hash).collect();
        let expected: Vec<bool> = (0..300).map(|i| !bad.contains(&i)).collect();
        let set = VerifiedTxs::default();
        assert_eq!(set.check(&txs, &hashes), expected);
        assert_eq!(set.contains_each(&hashes), expected);
    }

    #[test]
    fn the_oldest_hashes_are_forgotten_past_capacity() {
        let set = VerifiedTxs::new(3);
        let hashes: Vec<Hash> = txs(5).iter().map(Transaction::hash).collect();
        set.insert_all(hashes[..2].iter().copied());
        set.insert_all(hashes[..2].iter().copied());
        assert_eq!(set.len(), 2);
        set.insert_all(hashes[2..].iter().copied());
        assert_eq!(set.len(), 3);
        assert_eq!(set.contains_each(&hashes), [false, false, true, true, true]);
        // Neither collection ever grew past the capacity.
        let inner = set.lock();
        let (queued, slots) = inner.queue();
        assert!(slots < 8, "{slots}");
        assert_eq!(queued, 3);
    }

    #[test]
    fn a_full_default_set_keeps_its_queue_at_the_capacity() {
        let set = VerifiedTxs::default();
        let hashes =
            (0..DEFAULT_VERIFIED_TXS as u64 + 1_000).map(|i| Hash::digest(&i.to_le_bytes()));
        set.insert_all(hashes);
        let inner = set.lock();
        assert_eq!(inner.len(), DEFAULT_VERIFIED_TXS);
        // It used to hold one more before evicting, which doubled it.
        assert_eq!(inner.queue().1, DEFAULT_VERIFIED_TXS);
    }

    #[test]
    fn check_verifies_what_it_does_not_know_and_remembers_only_valid_ones() {
        let mut txs = txs(4);
        txs[2].signature = Signature([7; 64]);
        let hashes: Vec<Hash> = txs.iter().map(Transaction::hash).collect();
        let set = VerifiedTxs::default();
        assert_eq!(set.check(&txs, &hashes), [true, true, false, true]);
        assert_eq!(set.contains_each(&hashes), [true, true, false, true]);
        // A recorded hash is trusted without a check: give a known-valid
        // transaction's slot a forged one carrying its hash to show it.
        let forged = vec![txs[2].clone()];
        assert_eq!(set.check(&forged, &hashes[..1]), [true]);
        // The forged transaction under its own hash is checked and refused.
        assert_eq!(set.check(&forged, &hashes[2..3]), [false]);
    }
}
