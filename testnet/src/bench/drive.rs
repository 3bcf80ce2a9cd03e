//! Running a signed workload against a network: the submitter offers it at
//! its rate in batches, the follower ([`super::follow`]) marks what
//! becomes final, the [`Book`] keeps what became of each transaction.
//! `load` and `bench` both run their transactions through here.
//!
//! Every [`TICK`] the submitter takes the transactions due by then
//! ([`Book::take_due`]: held back by an account's pending bound or a
//! resend, as the book's docs say) and sends them with
//! `POST /txs/batch` in the binary form: one request per node per tick,
//! at most [`MAX_BATCH_TXS`] transactions, and at most
//! [`MAX_IN_FLIGHT_PER_NODE`] requests unanswered per node. Account a
//! sends to node `a mod n`; a node that left a request without an answer
//! is passed over for [`NODE_DOWN_MS`], and one at its in-flight bound for
//! the tick, its accounts sending to the next node meanwhile. A
//! transaction's submit time is when its first request was sent.
//!
//! The submission runs from the origin through the warmup and the timed
//! window, then drains: what is still held back is sent, and the run waits
//! until every transaction is final or refused, or the drain's limit.

use super::book::Book;
use super::follow::{self, Followed, Target, lock};
use super::forks::ForkWatch;
use super::plan::Workload;
use crate::local::client::{BatchAnswer, Client};
use crate::local::net::NodeInfo;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How often due transactions are sent.
pub const TICK: Duration = Duration::from_millis(5);
/// Unanswered `POST /txs/batch` requests per node, at most.
pub const MAX_IN_FLIGHT_PER_NODE: usize = 16;
/// Transactions per request, at most (the node's own limit).
pub const MAX_BATCH_TXS: usize = 4_096;
/// Longest wait for a batch's answer.
pub const BATCH_TIMEOUT: Duration = Duration::from_secs(3);
/// A node that left a request without an answer is passed over this long.
pub const NODE_DOWN_MS: u64 = 1_000;
/// How often the progress line is redrawn.
const REDRAW: Duration = Duration::from_millis(100);

/// The parts of a run, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    pub warmup_ms: u64,
    pub window_ms: u64,
    /// The longest wait after the window.
    pub drain_ms: u64,
}

impl Phases {
    pub fn window_end_ms(&self) -> u64 {
        self.warmup_ms + self.window_ms
    }

    /// What the progress line calls the moment `now_ms`.
    fn label(&self, now_ms: u64) -> String {
        if now_ms < self.warmup_ms {
            format!("warmup {}/{} s", now_ms / 1_000, self.warmup_ms / 1_000)
        } else if now_ms < self.window_end_ms() {
            format!(
                "window {}/{} s",
                (now_ms - self.warmup_ms) / 1_000,
                self.window_ms / 1_000
            )
        } else {
            format!("drain {} s", (now_ms - self.window_end_ms()) / 1_000)
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Run {
    pub client: Client,
    /// Where to submit: slot i is `nodes[i]`.
    pub nodes: Vec<NodeInfo>,
    /// Where to follow finality, first choice first.
    pub observers: Vec<NodeInfo>,
    pub workload: Arc<Workload>,
    pub phases: Phases,
    pub followed: Followed,
    /// Time 0 of the run.
    pub origin: Instant,
}

/// What a run left.
#[derive(Debug)]
pub struct Outcome {
    pub workload: Arc<Workload>,
    pub book: Arc<Mutex<Book>>,
    /// `POST /txs/batch` requests sent.
    pub requests: u64,
    /// Requests that got no answer.
    pub request_errors: u64,
    /// The last error a request got, if any.
    pub last_error: Option<String>,
    /// When submission and draining ended (ms from the origin).
    pub ended_ms: u64,
}

/// A node as the submitter sees it.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    in_flight: usize,
    down_until_ms: u64,
}

type Answered = (usize, Vec<u32>, anyhow::Result<BatchAnswer>);

/// Runs the workload: submits, follows, drains. Returns at the end of the
/// drain.
pub async fn run(run: Run) -> Outcome {
    let mut fresh = Book::new(&run.workload);
    if run.followed.final_only {
        fresh.forks = Some(ForkWatch::new(
            run.workload.len() as usize,
            run.followed.last,
        ));
    }
    let book = Arc::new(Mutex::new(fresh));
    let (stop_tx, stop_rx) = watch::channel(false);
    let follower = tokio::spawn(follow::follow(
        run.client.clone(),
        run.observers.clone(),
        Target {
            workload: Arc::clone(&run.workload),
            book: Arc::clone(&book),
            origin: run.origin,
        },
        stop_rx,
        run.followed,
    ));
    let mut submitter = Submitter {
        run: &run,
        book: &book,
        slots: vec![Slot::default(); run.nodes.len()],
        tasks: JoinSet::new(),
        outcome_requests: 0,
        request_errors: 0,
        last_error: None,
    };
    let ended_ms = submitter.submit().await;
    let (requests, request_errors, last_error) = (
        submitter.outcome_requests,
        submitter.request_errors,
        submitter.last_error.take(),
    );
    drop(submitter);
    let _ = stop_tx.send(true);
    let _ = follower.await;
    Outcome {
        workload: Arc::clone(&run.workload),
        book,
        requests,
        request_errors,
        last_error,
        ended_ms,
    }
}

fn ms_since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX)
}

struct Submitter<'a> {
    run: &'a Run,
    book: &'a Mutex<Book>,
    slots: Vec<Slot>,
    tasks: JoinSet<Answered>,
    outcome_requests: u64,
    request_errors: u64,
    last_error: Option<String>,
}

impl Submitter<'_> {
    /// Sends until the drain ends; returns when (ms from the origin).
    async fn submit(&mut self) -> u64 {
        let run = self.run;
        let bar = progress_bar(u64::from(run.workload.len()));
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let stop_ms = run.phases.window_end_ms() + run.phases.drain_ms;
        let mut drawn = Instant::now();
        loop {
            ticker.tick().await;
            while let Some(done) = self.tasks.try_join_next() {
                self.settle(done);
            }
            let now_ms = ms_since(run.origin);
            if now_ms >= run.phases.window_end_ms()
                && (now_ms >= stop_ms || lock(self.book).settled(&run.workload))
            {
                break;
            }
            self.send_due(now_ms);
            if drawn.elapsed() >= REDRAW {
                drawn = Instant::now();
                let book = lock(self.book);
                bar.set_position(book.sent());
                bar.set_prefix(run.phases.label(now_ms));
                bar.set_message(format!("{} final", book.finalized()));
            }
        }
        // Whatever is still in flight is answered or times out.
        while let Some(done) = self.tasks.join_next().await {
            self.settle(done);
        }
        bar.finish_and_clear();
        ms_since(run.origin)
    }

    /// Sends what is due at `now_ms`, one request per node at most.
    fn send_due(&mut self, now_ms: u64) {
        let run = self.run;
        let n = self.slots.len();
        let mut batches = vec![Vec::new(); n];
        let due = run.workload.due(now_ms);
        let slots = &self.slots;
        lock(self.book).take_due(
            &run.workload,
            due,
            now_ms,
            |account| route(slots, account, now_ms),
            &mut batches,
            MAX_BATCH_TXS,
        );
        for (slot, ks) in batches.into_iter().enumerate() {
            if ks.is_empty() {
                continue;
            }
            let (Some(node), Some(state)) = (run.nodes.get(slot), self.slots.get_mut(slot)) else {
                continue;
            };
            let txs: Vec<_> = ks.iter().filter_map(|k| run.workload.tx(*k)).collect();
            let body = phalanx_chain::encoding::encode(&txs);
            state.in_flight += 1;
            self.outcome_requests += 1;
            let client = run.client.clone();
            let node = node.clone();
            self.tasks.spawn(async move {
                let answer = client.submit_batch(&node, body, BATCH_TIMEOUT).await;
                (slot, ks, answer)
            });
        }
    }

    /// Records a request's answer.
    fn settle(&mut self, done: Result<Answered, tokio::task::JoinError>) {
        let Ok((slot, ks, answer)) = done else {
            self.request_errors += 1;
            return;
        };
        let now_ms = ms_since(self.run.origin);
        if let Some(state) = self.slots.get_mut(slot) {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
        let workload = &self.run.workload;
        let mut book = lock(self.book);
        match answer {
            Ok(BatchAnswer::Verdicts(verdicts)) => {
                for (i, k) in ks.iter().enumerate() {
                    let code = match verdicts.get(i) {
                        Some(verdict) => verdict.as_deref(),
                        None => Some("bad_answer"),
                    };
                    book.verdict(workload, *k, code, now_ms);
                }
            }
            Ok(BatchAnswer::Refused { code, message }) => {
                self.last_error = Some(format!("{code}: {message}"));
                for k in &ks {
                    book.verdict(workload, *k, Some(&code), now_ms);
                }
            }
            Err(e) => {
                self.request_errors += 1;
                self.last_error = Some(format!("{e:#}"));
                if let Some(state) = self.slots.get_mut(slot) {
                    state.down_until_ms = now_ms + NODE_DOWN_MS;
                }
                for k in &ks {
                    book.verdict(workload, *k, Some("no_answer"), now_ms);
                }
            }
        }
    }
}

/// The node slot account `account` sends to at `now_ms`: its own
/// (`account mod n`), else the next one that is neither passed over nor
/// at its in-flight bound; `None` if every node is.
fn route(slots: &[Slot], account: usize, now_ms: u64) -> Option<usize> {
    let n = slots.len();
    (0..n).map(|i| (account + i) % n).find(|s| {
        slots.get(*s).is_some_and(|slot| {
            slot.down_until_ms <= now_ms && slot.in_flight < MAX_IN_FLIGHT_PER_NODE
        })
    })
}

fn progress_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} sent, {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_send_to_their_node_unless_it_is_down_or_full() {
        let mut slots = vec![Slot::default(); 3];
        assert_eq!(route(&slots, 4, 0), Some(1));
        slots[1].down_until_ms = 1_000;
        assert_eq!(route(&slots, 4, 999), Some(2));
        assert_eq!(route(&slots, 4, 1_000), Some(1));
        slots[1].in_flight = MAX_IN_FLIGHT_PER_NODE;
        slots[2].in_flight = MAX_IN_FLIGHT_PER_NODE;
        assert_eq!(route(&slots, 4, 1_000), Some(0));
        slots[0].down_until_ms = 5_000;
        assert_eq!(route(&slots, 4, 1_000), None);
        assert_eq!(route(&[], 0, 0), None);
    }

    #[test]
    fn phases_name_the_moment() {
        let p = Phases {
            warmup_ms: 2_000,
            window_ms: 10_000,
            drain_ms: 5_000,
        };
        assert_eq!(p.window_end_ms(), 12_000);
        assert_eq!(p.label(1_500), "warmup 1/2 s");
        assert_eq!(p.label(2_000), "window 0/10 s");
        assert_eq!(p.label(13_100), "drain 1 s");
    }
}
