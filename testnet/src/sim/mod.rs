//! The deterministic simulator.
//!
//! n replicas of a consensus protocol run in one process from one `u64`
//! seed: a virtual clock in milliseconds, an event queue ordered by (time,
//! sequence number), and a network whose per-link delays are drawn
//! uniformly from a range, with loss, duplication, reordering (from the
//! random delays), partitions that start and heal at given times, and
//! crashes with restarts in which a replica keeps only what it persisted:
//! its last safety data and its committed blocks. A simulated client
//! submits signed transfers to every replica's mempool; each replica builds
//! and validates blocks with the real ledger code over an in-memory store.
//!
//! # The seam
//!
//! The simulator drives protocols through the consensus crate's seam,
//! [`phalanx_consensus::Protocol`], exactly as the node's driver does, and
//! names none of a protocol's message, timer, safety or error types: the
//! world is generic over `P: Protocol`, and [`run_once`] holds the one
//! dispatch from the scenario's [`ConsensusKind`] to a protocol type.
//!
//! - A replica is `P::new` with its key and a [`Tuning`] drawn from the
//!   scenario ([`Scenario::tuning`]), on its store's head block, then
//!   [`Input::Start`] with the safety data its store holds under
//!   `P::SAFETY_KEY` (none on a fresh start).
//! - Messages travel as bytes on a [`Channel`] and become the protocol's
//!   messages only through `P::verify` at the receiver, as in a node, so
//!   corrupted signatures are filtered where they would be in production;
//!   refused bytes are counted by [`RejectReason`] label. Consensus bytes
//!   verify the same whoever forwards them, so every copy of one send,
//!   forwarded copies included, shares the first delivery's result
//!   ([`Scenario::verify_cache`]); catch-up bytes, which depend on their
//!   sender, are verified every time. With the cache on,
//!   a block is also executed once per run, not once per replica: its
//!   changes depend on its hash alone and the replicas share them
//!   ([`phalanx_chain::speculative::SharedExecutions`]). With the cache on,
//!   signature verdicts are remembered too ([`phalanx_crypto::memo`]): a
//!   vote's signature is checked once, not again in every certificate
//!   that carries it on every replica.
//! - Signatures are ideal by default ([`Scenario::ideal_signatures`],
//!   [`phalanx_crypto::memo`]): a keyed BLAKE3 tag that only the key's
//!   holder can make and that verifies exactly where an ed25519 signature
//!   would. Signing on the curve was a third of the simulator's time; the
//!   protocols' code is the same either way (`--real-signatures` runs
//!   ed25519).
//! - Timers fire as [`Input::Timer`]; stale armings are ignored.
//! - Effects are carried out in order: `Persist` writes to the replica's
//!   store before any later effect; `Send` and `Broadcast` put copies on
//!   links, counted by [`Origin`] (authored, forwarded, catch-up); `Extend`
//!   with a final block commits it, after `P::check_finalized` checks its
//!   certificate against the replica's store; `Evidence` is judged by
//!   `P::check_evidence`. A [`Fault`] fails the run as a setup violation,
//!   after which the replica is fed nothing more.
//!
//! # Proof of work
//!
//! Mining is a random process per replica: a miner with share s of the
//! hash power ([`Scenario::hash_share`], `--hashrate`) finds blocks as a
//! Poisson process of rate s per block interval, so thousands of blocks
//! run in seconds without hashing. When its turn comes, the block it was
//! last asked to mine (`RequestWork`) is sealed at the virtual time (the
//! simulation's target is the easiest there is, so the nonce takes two
//! hashes on average) and handed back to its protocol, which checks and
//! publishes it as a node would. Blocks not yet final extend the replica's
//! store, `Revert` rolls it back (the transactions of the blocks taken off
//! go back to its pool), and `Finalize` hands the newly final blocks to
//! the checker as commits, so agreement is checked on final blocks as for
//! the committees. Reports add the blocks mined, the stale rate, the
//! reorganizations and their depth, and each miner's share of the final
//! chain; [`theory`] holds the published figures they are tested against.
//!
//! # Faults
//!
//! Faulty validators are the protocol's own Byzantine behaviours
//! ([`Byzantine::of`](phalanx_consensus::Byzantine::of); HotStuff: silent,
//! equivocate, double-vote, invalid-signature, stale-qc) and *twins*: a
//! validator run as two replicas with one key, each honest towards the
//! replicas it reaches, so that it signs conflicting proposals and votes
//! whenever the network splits them (Bano et al., "Twins: BFT Systems Made
//! Robust", 2020). The replica's behaviours follow the voting rules, and
//! HotStuff's safety rests on its voters, so only twins (more than f of
//! them) can split the committee; they are one proof that the agreement
//! checker can fail. The other is a broken protocol: `--unsafe-quorum`
//! makes every replica accept fewer signers than n - f as a quorum
//! ([`Scenario::unsafe_quorum`]).
//!
//! # Checkers
//!
//! Every run is checked for:
//! - **agreement**: no two honest replicas commit different blocks at one
//!   height, over the whole run;
//! - **integrity**: every committed block links to the replica's previous
//!   one, carries a certificate that verifies, and executes on the
//!   committed state;
//! - **liveness**: if at most f replicas are faulty (Byzantine, or down at
//!   the end), every honest replica that is up commits a block within the
//!   scenario's bound after the last partition heals or crashed replica
//!   restarts (the run is extended to cover that window);
//! - **evidence**: evidence of misbehaviour proves something, and never
//!   about an honest replica;
//! - **determinism**: running a seed again gives the same commit log hash
//!   (checked for a share of the seeds, see [`Batch::recheck_every`]).
//!
//! HotStuff is the protocol built so far. [`Batch`] runs many seeds (on
//! several threads; each seed's outcome is independent of the others and
//! of scheduling) and sums them into a [`Summary`].
//!
//! [`Tuning`]: phalanx_consensus::Tuning
//! [`Input::Start`]: phalanx_consensus::Input::Start
//! [`Input::Timer`]: phalanx_consensus::Input::Timer
//! [`Channel`]: phalanx_consensus::Channel
//! [`Origin`]: phalanx_consensus::Origin
//! [`RejectReason`]: phalanx_consensus::RejectReason
//! [`Fault`]: phalanx_consensus::Fault

pub mod check;
pub mod client;
pub mod ledger;
mod queue;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod theory;
mod world;

pub use report::{CheckerKind, RunReport, Summary, Violation};
pub use scenario::{Scenario, ScenarioError};

use phalanx_chain::ConsensusKind;
use phalanx_consensus::Protocol;
use phalanx_consensus::dispatch::{WithProtocol, with_protocol};
use phalanx_crypto::memo::{Signatures, with_memo};
use std::collections::BTreeMap;
use world::World;

/// Why a simulation could not run at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    #[error("--consensus {0} is not built into this simulator")]
    NotBuilt(ConsensusKind),
    #[error("invalid scenario: {0}")]
    Scenario(#[from] ScenarioError),
    #[error("could not set up the run: {0}")]
    Setup(String),
}

/// Runs one seed of `scenario`, with the protocol it names.
pub fn run_once(scenario: &Scenario, seed: u64) -> Result<RunReport, SimError> {
    scenario.validate()?;
    with_protocol(scenario.consensus, OneSeed { scenario, seed })
        .unwrap_or(Err(SimError::NotBuilt(scenario.consensus)))
}

/// Signature verdicts a run remembers, at most (see
/// [`phalanx_crypto::memo`]; about 64 bytes each).
const SIGNATURE_MEMO: usize = 1 << 17;

/// One seed's run, for whichever protocol.
struct OneSeed<'a> {
    scenario: &'a Scenario,
    seed: u64,
}

impl WithProtocol for OneSeed<'_> {
    type Output = Result<RunReport, SimError>;
    fn run<P: Protocol + 'static>(self) -> Self::Output {
        // A vote is checked as a vote, then in every certificate carrying
        // it, on every replica: the memo checks each signature once. Ideal
        // signatures are signed and recognized through it too.
        let capacity = if self.scenario.verify_cache {
            SIGNATURE_MEMO
        } else if self.scenario.ideal_signatures {
            1
        } else {
            return Ok(World::<P>::new(self.scenario, self.seed)?.run());
        };
        let signatures = if self.scenario.ideal_signatures {
            Signatures::Ideal
        } else {
            Signatures::Real
        };
        let (report, _hits) = with_memo(capacity, signatures, || {
            World::<P>::new(self.scenario, self.seed).map(World::run)
        });
        report
    }
}

/// Runs one seed, and if `recheck` runs it again and reports a determinism
/// violation if the two commit logs differ.
pub fn run(scenario: &Scenario, seed: u64, recheck: bool) -> Result<RunReport, SimError> {
    let mut report = run_once(scenario, seed)?;
    if recheck {
        let again = run_once(scenario, seed)?;
        let same = again.commit_log_hash == report.commit_log_hash
            && again.events == report.events
            && again.traffic == report.traffic;
        if !same {
            *report
                .violation_counts
                .entry(CheckerKind::Determinism)
                .or_default() += 1;
            report.violations.push(Violation {
                checker: CheckerKind::Determinism,
                detail: format!(
                    "seed {seed} ran twice: commit log hash {} then {}, {} then {} events",
                    report.commit_log_hash, again.commit_log_hash, report.events, again.events
                ),
            });
        }
    }
    Ok(report)
}

/// Many seeds of one scenario.
#[derive(Debug, Clone)]
pub struct Batch {
    pub base: Scenario,
    /// Replace the base's faults with a schedule drawn from each seed
    /// ([`Scenario::with_random_faults`]).
    pub random_faults: bool,
    pub seed_start: u64,
    pub seeds: u64,
    /// Run one seed in this many twice to check determinism (0: none).
    pub recheck_every: u64,
    pub threads: usize,
}

impl Batch {
    pub fn new(base: Scenario, seed_start: u64, seeds: u64) -> Batch {
        Batch {
            base,
            random_faults: false,
            seed_start,
            seeds,
            recheck_every: 10,
            threads: 1,
        }
    }

    /// The scenario seed `seed` runs.
    pub fn scenario_for(&self, seed: u64) -> Scenario {
        if self.random_faults {
            self.base.with_random_faults(seed)
        } else {
            self.base.clone()
        }
    }

    /// The command that runs `seed` alone, as this batch ran it.
    pub fn replay_command(&self, seed: u64) -> String {
        let mut parts = vec!["phalanx-testnet".to_owned(), "sim".to_owned()];
        parts.extend(self.base.to_args());
        if self.random_faults {
            parts.push("--random-faults".to_owned());
        }
        parts.extend([
            "--seed-start".to_owned(),
            seed.to_string(),
            "--seeds".to_owned(),
            "1".to_owned(),
        ]);
        parts.join(" ")
    }

    fn run_seed(&self, seed: u64) -> Result<RunReport, SimError> {
        let index = seed.wrapping_sub(self.seed_start);
        let recheck = self.recheck_every != 0 && index.is_multiple_of(self.recheck_every);
        run(&self.scenario_for(seed), seed, recheck)
    }

    /// Runs every seed, calling `on_run` for each in seed order, and sums
    /// them up.
    ///
    /// With several threads, each takes the next seed as soon as it is
    /// free (seeds differ in cost, and one in `recheck_every` runs twice:
    /// a fixed share per thread left one idle at every step), at most
    /// [`RUN_AHEAD`] seeds per thread ahead of the oldest one not yet
    /// reported, so that finished reports waiting for a slow seed stay
    /// bounded.
    pub fn run(&self, mut on_run: impl FnMut(&RunReport)) -> Result<Summary, SimError> {
        self.base.validate()?;
        let threads = self.threads.max(1);
        let end = self.seed_start.saturating_add(self.seeds);
        let mut summary = Summary::default();
        if threads == 1 || self.seeds <= 1 {
            for seed in self.seed_start..end {
                let report = self.run_seed(seed)?;
                on_run(&report);
                summary.add(&report);
            }
            return Ok(summary);
        }
        let window = RUN_AHEAD.saturating_mul(threads as u64);
        let queue = SeedQueue::new(self.seed_start, end, window);
        std::thread::scope(|scope| {
            let (sender, results) = std::sync::mpsc::channel();
            for _ in 0..threads {
                let (queue, sender) = (&queue, sender.clone());
                scope.spawn(move || {
                    // A panic stops the batch: the other threads must not
                    // wait for the seed this one will never report.
                    let _guard = StopOnPanic(queue);
                    while let Some(seed) = queue.take() {
                        if sender.send((seed, self.run_seed(seed))).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(sender);
            let mut waiting = BTreeMap::new();
            let mut next = self.seed_start;
            for (seed, result) in results {
                waiting.insert(seed, result);
                while let Some(result) = waiting.remove(&next) {
                    match result {
                        Ok(report) => {
                            on_run(&report);
                            summary.add(&report);
                        }
                        Err(e) => {
                            queue.stop();
                            return Err(e);
                        }
                    }
                    next += 1;
                    queue.reported(next);
                }
            }
            Ok(summary)
        })
    }
}

/// Stops a [`SeedQueue`] if dropped while its thread panics.
struct StopOnPanic<'a>(&'a SeedQueue);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.stop();
        }
    }
}

/// Seeds a thread may run ahead of the oldest one not yet reported.
const RUN_AHEAD: u64 = 8;

/// The seeds of a batch, handed out one at a time to the threads that run
/// them, within a window above the oldest seed not yet reported.
struct SeedQueue {
    state: std::sync::Mutex<SeedQueueState>,
    changed: std::sync::Condvar,
    end: u64,
    window: u64,
}

struct SeedQueueState {
    next: u64,
    /// Every seed below this has been reported.
    reported: u64,
    stopped: bool,
}

impl SeedQueue {
    fn new(start: u64, end: u64, window: u64) -> SeedQueue {
        SeedQueue {
            state: std::sync::Mutex::new(SeedQueueState {
                next: start,
                reported: start,
                stopped: false,
            }),
            changed: std::sync::Condvar::new(),
            end,
            window: window.max(1),
        }
    }

    /// The next seed to run, once it is within the window; `None` when
    /// there are no more or the batch stopped.
    fn take(&self) -> Option<u64> {
        let mut state = self.state.lock().ok()?;
        loop {
            if state.stopped || state.next >= self.end {
                return None;
            }
            if state.next < state.reported.saturating_add(self.window) {
                let seed = state.next;
                state.next += 1;
                return Some(seed);
            }
            state = self.changed.wait(state).ok()?;
        }
    }

    /// Every seed below `upto` has been reported.
    fn reported(&self, upto: u64) {
        if let Ok(mut state) = self.state.lock() {
            state.reported = upto;
        }
        self.changed.notify_all();
    }

    /// No more seeds are handed out.
    fn stop(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.stopped = true;
        }
        self.changed.notify_all();
    }
}

/// For randomized tests: the seeds to run, `PHALANX_SEED` alone if it is
/// set (to replay one), else `default`. Prints which.
pub fn test_seeds(default: std::ops::Range<u64>) -> std::ops::Range<u64> {
    match std::env::var("PHALANX_SEED") {
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(seed) => {
                eprintln!("PHALANX_SEED={seed}: replaying that seed alone");
                seed..seed.saturating_add(1)
            }
            Err(_) => {
                eprintln!("PHALANX_SEED={text:?} is not a u64; running the default seeds");
                default
            }
        },
        Err(_) => {
            eprintln!(
                "seeds {}..{} (set PHALANX_SEED=<n> to replay one)",
                default.start, default.end
            );
            default
        }
    }
}
