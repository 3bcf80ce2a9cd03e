//! What became of every transaction of a run, shared by the submitter and
//! the follower: when it was sent, the node's verdict, when it was seen
//! final, and per account what may be sent next.
//!
//! # Refusals, with presigned nonces
//!
//! An account's transactions carry consecutive nonces signed in advance,
//! so a nonce the node refuses leaves a gap that no later one of that
//! account can pass. The book handles it this way:
//!
//! - A refusal that may pass later ([`retryable`]: `mempool_full`,
//!   `nonce_gap`, `timeout`, `internal`, a request without an answer, ...)
//!   sends the same transaction again, no sooner than [`RESEND_AFTER_MS`]
//!   later, doubling after each refusal up to [`MAX_RESEND_AFTER_MS`]
//!   (200, 400, 800, 1,600, 1,600 ms, ...: a node a few blocks behind
//!   gets about 3 s to recover), up to [`MAX_ATTEMPTS`] sends in all,
//!   except `mempool_full`: that is the node's backpressure (it is busy;
//!   the transaction is fine), sent again for as long as the run lasts, as
//!   a wallet waiting for room would. Before, a run far past capacity
//!   stopped most accounts within seconds and then measured only the few
//!   left. Meanwhile the account sends nothing new, so no later nonce
//!   piles up behind the gap.
//! - An answer to a resend that says the transaction is already known
//!   (`duplicate`, `nonce_pending`: it is pending; `nonce_too_low`: it was
//!   committed) counts as admitted: an earlier send got through.
//! - Any other refusal, or the last allowed attempt refused, is final: the
//!   transaction counts as rejected with that reason, the account is
//!   *broken* and sends no more. Its later transactions count as skipped
//!   (never sent), and those it had sent already, admitted but never
//!   final, as lost behind the refusal.
//!
//! An account also never has more than [`MAX_PENDING_PER_ACCOUNT`]
//! transactions sent and not yet final (below the node's default
//! `mempool.max_nonce_gap` of 64, with a margin for a submitting node a
//! block or two behind the observing one): beyond it the account's due
//! transactions wait, and go out late. Their submit time is when they are
//! sent; how late that was is reported apart (submit lag).

use super::forks::ForkWatch;
use super::plan::Workload;
use phalanx_chain::Hash;
use std::collections::{BTreeMap, BTreeSet};

/// Transactions of one account sent and not seen final, at most.
pub const MAX_PENDING_PER_ACCOUNT: u32 = 48;
/// Sends of one transaction, at most (the first and the resends).
pub const MAX_ATTEMPTS: u8 = 5;
/// A refused transaction is sent again no sooner than this (ms), doubled
/// for each earlier resend.
pub const RESEND_AFTER_MS: u64 = 200;
/// The longest wait before a resend (ms).
pub const MAX_RESEND_AFTER_MS: u64 = RESEND_AFTER_MS << 3;
/// Distinct refusal codes kept; any further code counts as `other`.
const MAX_REASONS: usize = 32;
/// Blocks recorded, at most (later ones are only counted).
const MAX_BLOCKS: usize = 1_000_000;
/// A time not reached (`sent_ms`, `final_ms`).
pub const NEVER: u32 = u32::MAX;

/// Where a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    /// Not sent (not due yet, held back, or its account is broken).
    Unsent,
    /// In a request not answered yet.
    InFlight,
    /// Admitted by a node, not seen final yet.
    Accepted,
    /// Refused for a reason that may pass; to be sent again.
    Resend,
    /// Refused for good.
    Refused,
    /// In a block the followed node committed.
    Final,
}

/// One transaction: 12 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxRecord {
    /// When it was first sent (ms from the origin), or [`NEVER`].
    pub sent_ms: u32,
    /// When it was seen final (ms from the origin), or [`NEVER`].
    pub final_ms: u32,
    pub status: TxStatus,
    pub attempts: u8,
    /// Index into the book's reasons: the last refusal's code.
    pub reason: u8,
}

impl TxRecord {
    const NEW: TxRecord = TxRecord {
        sent_ms: NEVER,
        final_ms: NEVER,
        status: TxStatus::Unsent,
        attempts: 0,
        reason: 0,
    };

    /// Submit to final, in ms, if it was both.
    pub fn latency_ms(&self) -> Option<u32> {
        (self.sent_ms != NEVER && self.final_ms != NEVER)
            .then(|| self.final_ms.saturating_sub(self.sent_ms))
    }
}

#[derive(Debug, Clone, Default)]
struct AccountState {
    /// Its next transaction never sent (a sequence number, not a nonce).
    next_seq: u32,
    /// Sent, not final, not refused for good.
    outstanding: u32,
    /// Its transactions waiting to be sent again (k), lowest first.
    resend: BTreeSet<u32>,
    resend_at_ms: u64,
    broken: bool,
}

/// A block the follower read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSeen {
    pub height: u64,
    /// When its commit was seen (ms from the origin).
    pub seen_ms: u32,
    /// Transactions in it.
    pub txs: u32,
    /// Of which this run's.
    pub ours: u32,
    /// Its header's timestamp (ms since the Unix epoch).
    pub timestamp_ms: u64,
}

/// Codes after which a transaction is sent again.
pub fn retryable(code: &str) -> bool {
    matches!(
        code,
        "mempool_full" | "nonce_gap" | "timeout" | "internal" | "no_answer" | "bad_answer"
    ) || code.starts_with("http_5")
}

/// Codes that, answered to a resend, say an earlier send got through.
fn already_known(code: &str) -> bool {
    matches!(code, "duplicate" | "nonce_pending" | "nonce_too_low")
}

/// The state of every transaction and account of a run.
#[derive(Debug)]
pub struct Book {
    txs: Vec<TxRecord>,
    accounts: Vec<AccountState>,
    reasons: Vec<String>,
    /// Every refused send, by code (a transaction refused and then
    /// admitted on a resend counts here too).
    pub refusals: BTreeMap<String, u64>,
    /// Answers to resends that said an earlier send got through.
    pub already_known: u64,
    blocks: Vec<BlockSeen>,
    /// Proof of work: inclusions, reorganizations, safety.
    pub forks: Option<ForkWatch>,
    /// Transactions sent at least once.
    sent: u64,
    /// Transactions in flight, admitted or waiting for a resend.
    open: u64,
    finalized: u64,
}

impl Book {
    pub fn new(workload: &Workload) -> Book {
        Book {
            txs: vec![TxRecord::NEW; workload.len() as usize],
            accounts: vec![AccountState::default(); workload.accounts().len()],
            reasons: vec!["other".to_owned()],
            refusals: BTreeMap::new(),
            already_known: 0,
            blocks: Vec::new(),
            forks: None,
            sent: 0,
            open: 0,
            finalized: 0,
        }
    }

    pub fn txs(&self) -> &[TxRecord] {
        &self.txs
    }

    pub fn blocks(&self) -> &[BlockSeen] {
        &self.blocks
    }

    /// The code a reason index stands for.
    pub fn reason(&self, index: u8) -> &str {
        self.reasons
            .get(usize::from(index))
            .map_or("other", String::as_str)
    }

    pub fn sent(&self) -> u64 {
        self.sent
    }

    pub fn finalized(&self) -> u64 {
        self.finalized
    }

    /// True if account `account` was refused for good.
    pub fn broken(&self, account: usize) -> bool {
        self.accounts.get(account).is_some_and(|a| a.broken)
    }

    /// True once nothing is left to wait for: every transaction final,
    /// refused for good, or unsendable (its account broken).
    pub fn settled(&self, workload: &Workload) -> bool {
        self.open == 0
            && self
                .accounts
                .iter()
                .enumerate()
                .all(|(a, s)| s.broken || s.next_seq >= workload.account_due(a, workload.len()))
    }

    fn reason_index(&mut self, code: &str) -> u8 {
        if let Some(i) = self.reasons.iter().position(|r| r == code) {
            return i as u8;
        }
        if self.reasons.len() >= MAX_REASONS {
            return 0;
        }
        self.reasons.push(code.to_owned());
        (self.reasons.len() - 1) as u8
    }

    /// Takes what is to be sent now: every account's resends whose time
    /// has come, else its transactions among the first `due` (up to its
    /// pending bound). `route(account)` names the node slot an account
    /// sends to now (`None`: hold it); `batches[slot]` receives the k's,
    /// at most `max_batch` each. The transactions taken are in flight,
    /// sent at `now_ms`.
    pub fn take_due(
        &mut self,
        workload: &Workload,
        due: u32,
        now_ms: u64,
        mut route: impl FnMut(usize) -> Option<usize>,
        batches: &mut [Vec<u32>],
        max_batch: usize,
    ) {
        let now = u32::try_from(now_ms).unwrap_or(NEVER - 1);
        for a in 0..self.accounts.len() {
            let Some(state) = self.accounts.get(a) else {
                continue;
            };
            let pending_new = state.next_seq < workload.account_due(a, due)
                && state.outstanding < MAX_PENDING_PER_ACCOUNT;
            let resend_ready = !state.resend.is_empty() && state.resend_at_ms <= now_ms;
            if state.broken || !(resend_ready || (state.resend.is_empty() && pending_new)) {
                continue;
            }
            let Some(batch) = route(a).and_then(|slot| batches.get_mut(slot)) else {
                continue;
            };
            let taken = take_from_account(&mut self.accounts, a, workload, due, batch, max_batch);
            for k in taken {
                let Some(tx) = self.txs.get_mut(k as usize) else {
                    continue;
                };
                if tx.sent_ms == NEVER {
                    tx.sent_ms = now;
                    self.sent += 1;
                    self.open += 1;
                }
                tx.status = TxStatus::InFlight;
                tx.attempts = tx.attempts.saturating_add(1);
            }
        }
    }

    /// The node's verdict on transaction `k`: `None` if admitted, else the
    /// error code.
    pub fn verdict(&mut self, workload: &Workload, k: u32, code: Option<&str>, now_ms: u64) {
        let Some(tx) = self.txs.get(k as usize).copied() else {
            return;
        };
        if tx.status != TxStatus::InFlight {
            // Final already (the follower was quicker), or answered twice.
            return;
        }
        let Some(code) = code else {
            self.set_status(k, TxStatus::Accepted);
            return;
        };
        if tx.attempts > 1 && already_known(code) {
            self.already_known += 1;
            self.set_status(k, TxStatus::Accepted);
            return;
        }
        *self.refusals.entry(code.to_owned()).or_default() += 1;
        let reason = self.reason_index(code);
        if let Some(tx) = self.txs.get_mut(k as usize) {
            tx.reason = reason;
        }
        let account = workload.account_of(k);
        let Some(state) = self.accounts.get_mut(account) else {
            return;
        };
        let backpressure = code == "mempool_full";
        if backpressure || (retryable(code) && tx.attempts < MAX_ATTEMPTS) {
            state.resend.insert(k);
            let backoff =
                (RESEND_AFTER_MS << tx.attempts.saturating_sub(1).min(3)).min(MAX_RESEND_AFTER_MS);
            state.resend_at_ms = now_ms + backoff;
            self.set_status(k, TxStatus::Resend);
        } else {
            state.broken = true;
            state.outstanding = state.outstanding.saturating_sub(1);
            self.open = self.open.saturating_sub(1);
            self.set_status(k, TxStatus::Refused);
        }
    }

    fn set_status(&mut self, k: u32, status: TxStatus) {
        if let Some(tx) = self.txs.get_mut(k as usize) {
            tx.status = status;
        }
    }

    /// A committed (proof of work: final) block, seen `seen_ms` after the
    /// origin, with these transaction hashes and its header's timestamp:
    /// this run's become final.
    pub fn finalize_block(
        &mut self,
        workload: &Workload,
        height: u64,
        hashes: &[Hash],
        seen_ms: u64,
        timestamp_ms: u64,
    ) {
        let seen = u32::try_from(seen_ms).unwrap_or(NEVER - 1);
        let mut ours = 0;
        for hash in hashes {
            let Some(k) = workload.find(hash) else {
                continue;
            };
            ours += 1;
            self.finalize(workload, k, seen);
        }
        if self.blocks.len() < MAX_BLOCKS {
            self.blocks.push(BlockSeen {
                height,
                seen_ms: seen,
                txs: hashes.len() as u32,
                ours,
                timestamp_ms,
            });
        }
    }

    fn finalize(&mut self, workload: &Workload, k: u32, seen: u32) {
        let Some(tx) = self.txs.get_mut(k as usize) else {
            return;
        };
        let was = tx.status;
        if was == TxStatus::Final {
            return;
        }
        tx.status = TxStatus::Final;
        tx.final_ms = seen;
        self.finalized += 1;
        let account = workload.account_of(k);
        let Some(state) = self.accounts.get_mut(account) else {
            return;
        };
        if matches!(
            was,
            TxStatus::InFlight | TxStatus::Accepted | TxStatus::Resend
        ) {
            state.outstanding = state.outstanding.saturating_sub(1);
            self.open = self.open.saturating_sub(1);
        }
        state.resend.remove(&k);
    }
}

/// Moves account `a`'s resends whose time has come (or, with none
/// waiting, its due new transactions up to its pending bound) into
/// `batch`; returns the k's taken.
fn take_from_account(
    accounts: &mut [AccountState],
    a: usize,
    workload: &Workload,
    due: u32,
    batch: &mut Vec<u32>,
    max_batch: usize,
) -> Vec<u32> {
    let Some(state) = accounts.get_mut(a) else {
        return Vec::new();
    };
    let mut taken = Vec::new();
    if !state.resend.is_empty() {
        while batch.len() < max_batch {
            let Some(k) = state.resend.pop_first() else {
                break;
            };
            batch.push(k);
            taken.push(k);
        }
        return taken;
    }
    let account_due = workload.account_due(a, due);
    while state.next_seq < account_due
        && state.outstanding < MAX_PENDING_PER_ACCOUNT
        && batch.len() < max_batch
    {
        let k = workload.tx_index(a, state.next_seq);
        batch.push(k);
        taken.push(k);
        state.next_seq += 1;
        state.outstanding += 1;
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_chain::ChainId;
    use phalanx_crypto::Keypair;
    use std::sync::atomic::{AtomicBool, AtomicU64};

    fn workload(accounts: u8, count: u32) -> Workload {
        let keys: Vec<(Keypair, u64)> = (0..accounts)
            .map(|a| (Keypair::from_seed(&[a + 1; 32]), 0))
            .collect();
        let chain = ChainId::new("phalanx-book-test").unwrap();
        Workload::sign(
            &chain,
            &keys,
            1_000.0,
            count,
            &AtomicU64::new(0),
            &AtomicBool::new(false),
        )
        .unwrap()
    }

    /// Everything due now into one batch (one node).
    fn take(book: &mut Book, w: &Workload, due: u32, now_ms: u64) -> Vec<u32> {
        let mut batches = vec![Vec::new()];
        book.take_due(w, due, now_ms, |_| Some(0), &mut batches, 4_096);
        batches.pop().unwrap()
    }

    #[test]
    fn due_transactions_go_out_in_nonce_order_up_to_the_pending_bound() {
        let w = workload(2, 200);
        let mut book = Book::new(&w);
        assert_eq!(take(&mut book, &w, 3, 0), vec![0, 2, 1]);
        assert_eq!(book.txs()[2].status, TxStatus::InFlight);
        let sent = take(&mut book, &w, 200, 5);
        // Each account stops at its pending bound.
        assert_eq!(sent.len() as u32, 2 * MAX_PENDING_PER_ACCOUNT - 3);
        assert!(take(&mut book, &w, 200, 10).is_empty());
        // A final transaction makes room for one more of its account.
        book.verdict(&w, 0, None, 10);
        book.finalize_block(&w, 1, &[w.tx(0).unwrap().hash()], 20, 0);
        assert_eq!(book.txs()[0].latency_ms(), Some(20));
        assert_eq!(
            take(&mut book, &w, 200, 25),
            vec![w.tx_index(0, MAX_PENDING_PER_ACCOUNT)]
        );
        assert_eq!(book.blocks().len(), 1);
        assert_eq!((book.blocks()[0].txs, book.blocks()[0].ours), (1, 1));
        assert!(!book.settled(&w));
    }

    /// One account of `count` transactions; its first two sent at 0, the
    /// first refused with `code` at 1 ms, the second admitted.
    fn first_refused(count: u32, code: &str) -> (Workload, Book) {
        let w = workload(1, count);
        let mut book = Book::new(&w);
        assert_eq!(take(&mut book, &w, 2, 0), vec![0, 1]);
        book.verdict(&w, 0, Some(code), 1);
        book.verdict(&w, 1, None, 1);
        (w, book)
    }

    #[test]
    fn a_retryable_refusal_is_sent_again_later_and_holds_its_account() {
        let (w, mut book) = first_refused(10, "mempool_full");
        assert_eq!(book.txs()[0].status, TxStatus::Resend);
        // Held: nothing new, and no resend before its time.
        assert!(take(&mut book, &w, 5, 100).is_empty());
        assert_eq!(take(&mut book, &w, 5, 1 + RESEND_AFTER_MS), vec![0]);
        // The resend finds it pending already: an earlier send got through.
        book.verdict(&w, 0, Some("duplicate"), 300);
        assert_eq!(book.txs()[0].status, TxStatus::Accepted);
        assert_eq!(book.already_known, 1);
        assert_eq!(book.txs()[0].attempts, 2);
        assert_eq!(book.refusals["mempool_full"], 1);
        assert_eq!(take(&mut book, &w, 5, 300), vec![2, 3, 4]);
    }

    #[test]
    fn a_final_refusal_breaks_the_account_and_settles_it() {
        let (w, mut book) = first_refused(4, "insufficient_balance");
        assert_eq!(book.txs()[0].status, TxStatus::Refused);
        assert_eq!(book.reason(book.txs()[0].reason), "insufficient_balance");
        assert!(book.broken(0));
        assert!(take(&mut book, &w, 4, 500).is_empty());
        // Nonce 1 is admitted but can never be final: the book waits for
        // it until the run gives up.
        assert!(!book.settled(&w));
        // Retryable refusals are sent again after a doubling backoff, and
        // given up after the last attempt.
        let mut book = Book::new(&w);
        assert_eq!(take(&mut book, &w, 1, 0), vec![0]);
        book.verdict(&w, 0, Some("no_answer"), 0);
        let mut now = 0;
        for resend in 1..MAX_ATTEMPTS {
            let backoff = RESEND_AFTER_MS << (resend - 1);
            assert!(take(&mut book, &w, 1, now + backoff - 1).is_empty());
            now += backoff;
            assert_eq!(take(&mut book, &w, 1, now), vec![0], "resend {resend}");
            book.verdict(&w, 0, Some("no_answer"), now);
        }
        assert_eq!(now, 200 + 400 + 800 + 1_600);
        assert_eq!(book.txs()[0].status, TxStatus::Refused);
        assert_eq!(book.refusals["no_answer"], u64::from(MAX_ATTEMPTS));
        assert!(book.settled(&w));
    }

    #[test]
    fn a_full_mempool_is_waited_out_however_long_it_lasts() {
        let w = workload(1, 2);
        let mut book = Book::new(&w);
        assert_eq!(take(&mut book, &w, 1, 0), vec![0]);
        book.verdict(&w, 0, Some("mempool_full"), 0);
        let mut now = 0;
        // Far more refusals than MAX_ATTEMPTS; the wait stops growing.
        for resend in 1..=3 * u64::from(MAX_ATTEMPTS) {
            let backoff = (RESEND_AFTER_MS << (resend - 1).min(3)).min(MAX_RESEND_AFTER_MS);
            assert!(take(&mut book, &w, 1, now + backoff - 1).is_empty());
            now += backoff;
            assert_eq!(take(&mut book, &w, 1, now), vec![0], "resend {resend}");
            book.verdict(&w, 0, Some("mempool_full"), now);
            assert_eq!(book.txs()[0].status, TxStatus::Resend);
        }
        assert_eq!(
            book.refusals["mempool_full"],
            3 * u64::from(MAX_ATTEMPTS) + 1
        );
        // Room at last.
        now += MAX_RESEND_AFTER_MS;
        assert_eq!(take(&mut book, &w, 1, now), vec![0]);
        book.verdict(&w, 0, None, now);
        assert_eq!(book.txs()[0].status, TxStatus::Accepted);
        assert!(!book.settled(&w));
    }

    #[test]
    fn finality_counts_once_and_beats_a_late_answer() {
        let w = workload(1, 2);
        let mut book = Book::new(&w);
        assert_eq!(take(&mut book, &w, 2, 0), vec![0, 1]);
        let hashes = [w.tx(0).unwrap().hash(), w.tx(1).unwrap().hash()];
        book.finalize_block(&w, 1, &hashes, 40, 0);
        book.finalize_block(&w, 1, &hashes, 50, 0);
        book.verdict(&w, 0, Some("no_answer"), 60);
        assert_eq!(book.finalized(), 2);
        assert_eq!(book.txs()[0].status, TxStatus::Final);
        assert_eq!(book.txs()[0].final_ms, 40);
        assert!(book.refusals.is_empty());
        assert!(book.settled(&w));
    }

    #[test]
    fn refusal_codes_are_bounded() {
        let w = workload(1, 1);
        let mut book = Book::new(&w);
        for i in 0..100 {
            book.reason_index(&format!("code_{i}"));
        }
        assert_eq!(book.reasons.len(), MAX_REASONS);
        assert_eq!(book.reason_index("code_99"), 0);
        assert_eq!(book.reason(0), "other");
    }
}
