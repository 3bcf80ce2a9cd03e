//! What a run measured, counted from its book: the transactions due in the
//! timed window (the *measured* ones; the warmup's are counted apart) by
//! what became of them, their latencies, and a timeline of the whole run.

use super::book::{Book, NEVER, TxRecord, TxStatus};
use super::drive::Phases;
use super::plan::Workload;
use super::stats::{Event, Second, Timeline};
use std::collections::BTreeMap;

/// The measured transactions by outcome; every one is in exactly one of
/// `finalized`, `rejected`, `lost`, `skipped` and `unsent`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Due in the timed window.
    pub offered: u64,
    /// Of those, sent at least once.
    pub submitted: u64,
    /// Of those, first sent after the window had ended (held back).
    pub sent_late: u64,
    /// Seen final.
    pub finalized: u64,
    /// Refused for good (or refused and not sent again before the end),
    /// by the last refusal's code.
    pub rejected: BTreeMap<String, u64>,
    /// Admitted (or sent without an answer) and never seen final.
    pub lost: u64,
    /// Of `lost`, those whose account had a nonce refused for good: they
    /// could never be final.
    pub lost_behind_refusal: u64,
    /// Never sent: an earlier nonce of their account was refused for good.
    pub skipped: u64,
    /// Never sent: held back (pending bound, nodes down) to the end.
    pub unsent: u64,
    /// Submit-to-final latencies of the finalized, sorted (ms).
    pub latencies_ms: Vec<u32>,
    /// How late each submitted one was sent after it was due, sorted (ms).
    pub submit_lag_ms: Vec<u32>,
    /// Finality events of any of the run's transactions (warmup ones
    /// too) inside the timed window.
    pub final_in_window: u64,
    /// The first send and the last finality of a measured transaction
    /// (ms from the origin).
    pub first_sent_ms: Option<u32>,
    pub last_final_ms: Option<u32>,
    /// Warmup transactions: due, and seen final.
    pub warmup_offered: u64,
    pub warmup_finalized: u64,
}

impl Tally {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Counts `book` for a run of `workload` in `phases`.
    pub fn count(book: &Book, workload: &Workload, phases: &Phases) -> Tally {
        let (ws, we) = (phases.warmup_ms, phases.window_end_ms());
        let in_window = |ms: u32| ms != NEVER && (ws..we).contains(&u64::from(ms));
        let mut t = Tally::default();
        for (k, tx) in book.txs().iter().enumerate() {
            let k = k as u32;
            if in_window(tx.final_ms) {
                t.final_in_window += 1;
            }
            if workload.due_ms(k) < ws {
                t.warmup_offered += 1;
                t.warmup_finalized += u64::from(tx.status == TxStatus::Final);
            } else {
                t.measure(book, workload, phases, k, tx);
            }
        }
        t.latencies_ms.sort_unstable();
        t.submit_lag_ms.sort_unstable();
        t
    }

    fn measure(
        &mut self,
        book: &Book,
        workload: &Workload,
        phases: &Phases,
        k: u32,
        tx: &TxRecord,
    ) {
        self.offered += 1;
        let broken = book.broken(workload.account_of(k));
        if tx.sent_ms != NEVER {
            self.submitted += 1;
            self.sent_late += u64::from(u64::from(tx.sent_ms) >= phases.window_end_ms());
            let lag = u64::from(tx.sent_ms).saturating_sub(workload.due_ms(k));
            self.submit_lag_ms.push(u32::try_from(lag).unwrap_or(NEVER));
            self.first_sent_ms = Some(self.first_sent_ms.map_or(tx.sent_ms, |f| f.min(tx.sent_ms)));
        }
        match tx.status {
            TxStatus::Final => {
                self.finalized += 1;
                if let Some(ms) = tx.latency_ms() {
                    self.latencies_ms.push(ms);
                }
                self.last_final_ms = Some(
                    self.last_final_ms
                        .map_or(tx.final_ms, |l| l.max(tx.final_ms)),
                );
            }
            TxStatus::Refused | TxStatus::Resend => {
                *self
                    .rejected
                    .entry(book.reason(tx.reason).to_owned())
                    .or_default() += 1;
            }
            TxStatus::Accepted | TxStatus::InFlight => {
                self.lost += 1;
                self.lost_behind_refusal += u64::from(broken);
            }
            TxStatus::Unsent if broken => self.skipped += 1,
            TxStatus::Unsent => self.unsent += 1,
        }
    }

    /// Offered, submitted and finalized transactions and blocks per second,
    /// from the origin to `end_ms`.
    pub fn timeline(book: &Book, workload: &Workload, phases: &Phases, end_ms: u64) -> Vec<Second> {
        let mut timeline = Timeline::new(phases.warmup_ms, end_ms.max(phases.window_end_ms()));
        for (k, tx) in book.txs().iter().enumerate() {
            timeline.add(Event::Offered, workload.due_ms(k as u32));
            if tx.sent_ms != NEVER {
                timeline.add(Event::Submitted, u64::from(tx.sent_ms));
            }
            if tx.final_ms != NEVER {
                timeline.add(Event::Finalized, u64::from(tx.final_ms));
            }
        }
        for block in book.blocks() {
            timeline.add(Event::Block, u64::from(block.seen_ms));
        }
        timeline.into_seconds()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_chain::ChainId;
    use phalanx_crypto::Keypair;
    use std::sync::atomic::{AtomicBool, AtomicU64};

    #[test]
    fn every_measured_transaction_has_one_outcome() {
        // 3 accounts at 10 tx/s: 1 s of warmup (k 0..10), 2 s measured.
        let keys: Vec<(Keypair, u64)> = (0..3u8)
            .map(|a| (Keypair::from_seed(&[a + 1; 32]), 0))
            .collect();
        let chain = ChainId::new("phalanx-tally-test").unwrap();
        let w = Workload::sign(
            &chain,
            &keys,
            10.0,
            30,
            &AtomicU64::new(0),
            &AtomicBool::new(false),
        )
        .unwrap();
        let phases = Phases {
            warmup_ms: 1_000,
            window_ms: 2_000,
            drain_ms: 1_000,
        };
        let mut book = Book::new(&w);
        let mut batch = vec![Vec::new()];
        // Everything due by 2.5 s goes out at once (26 transactions).
        book.take_due(&w, w.due(2_500), 2_500, |_| Some(0), &mut batch, 4_096);
        let sent = batch.pop().unwrap();
        assert_eq!(sent.len(), 26);
        // Account 2's k = 14 is refused for good: its k = 17, 20, 23 were
        // admitted behind it and 26, 29 are never sent. Account 1's k = 13
        // is admitted and never final. The rest is final 100 ms later.
        for k in &sent {
            let code = (*k == 14).then_some("insufficient_balance");
            book.verdict(&w, *k, code, 2_500);
        }
        let finals: Vec<_> = sent
            .iter()
            .filter(|k| ![13, 14, 17, 20, 23].contains(*k))
            .map(|k| w.tx(*k).unwrap().hash())
            .collect();
        book.finalize_block(&w, 1, &finals, 2_600, 0);
        let t = Tally::count(&book, &w, &phases);
        assert_eq!((t.warmup_offered, t.warmup_finalized), (10, 10));
        assert_eq!(t.offered, 20);
        assert_eq!(t.submitted, 16);
        assert_eq!(t.finalized, 11);
        assert_eq!(t.rejected.get("insufficient_balance"), Some(&1));
        assert_eq!((t.lost, t.lost_behind_refusal), (4, 3));
        assert_eq!(t.skipped, 2);
        // Accounts 0 and 1 had k 27, 28 not yet due at 2.5 s.
        assert_eq!(t.unsent, 2);
        assert_eq!(
            t.finalized + t.rejected_total() + t.lost + t.skipped + t.unsent,
            t.offered
        );
        assert_eq!(t.latencies_ms.len(), 11);
        assert!(t.latencies_ms.iter().all(|ms| *ms == 100));
        // k = 10 was due at 1 s and sent at 2.5 s.
        assert_eq!(t.submit_lag_ms.last(), Some(&1_500));
        assert_eq!(t.final_in_window, 21);
        let seconds = Tally::timeline(&book, &w, &phases, 4_000);
        assert_eq!(seconds.len(), 4);
        assert_eq!(seconds.iter().map(|s| s.offered).sum::<u64>(), 30);
        assert_eq!(seconds.iter().map(|s| s.finalized).sum::<u64>(), 21);
        assert_eq!(seconds[2].submitted, 26);
        assert_eq!(seconds[2].blocks, 1);
    }
}
