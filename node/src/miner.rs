//! The proof-of-work miner: searches nonces for the block template the
//! protocol last asked for ([`Effect::RequestWork`]) and hands a sealed
//! block back to the driver, which feeds it to the protocol as
//! [`Input::Mined`].
//!
//! # Threads
//! Hashing is CPU-bound, so it runs on `threads` std threads of its own,
//! never on the async runtime. The threads share one job at a time:
//! thread `i` of `n` tries the nonces `i, i + n, i + 2n, ...` of the same
//! header. A header's proof-of-work hash is SHA-256d of its encoding,
//! which ends with the nonce, so a thread encodes the rest once
//! ([`BlockHeader::mining_prefix`]) and appends each nonce as a varint.
//!
//! # Work and cancellation
//! Every [`Miner::submit`] (and [`Miner::cancel`]) starts a new
//! *generation*. Threads check the current generation between chunks of
//! hashes (a few milliseconds of work), so work in progress stops at once
//! when the protocol asks for other work; a thread that finds a block
//! retires its generation (the other threads stop too) and sends the
//! block with the generation it was mined for, so the driver can drop a
//! block for work it no longer wants.
//!
//! # Timestamps
//! Between chunks a thread raises the header's timestamp to the wall clock
//! if the clock has moved past it (recomputing the prefix, and starting
//! its nonces over: a new header is a new search space), never below the
//! template's own timestamp. Nothing else in the block depends on its
//! timestamp, and the protocol's future-drift rule is measured against
//! the same kind of clock.
//!
//! # Rate limit
//! `hashrate_limit` (hashes per second for the whole miner; 0: none) is
//! split between the threads. Each paces itself ([`pace`]): after `done`
//! hashes since it started a job it waits until `done / rate` seconds
//! have passed, in chunks of about a hundredth of a second of hashing, so
//! it uses that rate and no more. A thread that fell behind (it was not
//! scheduled) may catch up by at most [`MAX_BURST`] worth of hashes.
//!
//! # Mining on demand
//! [`MinerControl::mine_now`] (`POST /mine`, for test networks) asks for
//! blocks now, regtest-style: until the miner has found that many more
//! blocks, its threads hash at full speed, ignoring `hashrate_limit`
//! (blocks still have to meet their target), then go back to the limit.
//! A thread paused by its pacing wakes at once. One count is kept: a new
//! request adds to what is left, up to [`MAX_ON_DEMAND_BLOCKS`]. The
//! count falls by one for each found block the driver takes
//! ([`Miner::took_block`]); one it drops, because newer work replaced
//! the work it was mined for, does not count.
//!
//! # Bounds
//! Found blocks travel to the driver through a bounded channel
//! ([`MINED_QUEUE`]). A thread reserves a slot before it retires its job;
//! if there is none (the driver is far behind) it drops that block, waits
//! a little and searches on, so the work is not lost with it.

use phalanx_chain::encoding::push_varint;
use phalanx_chain::pow::{CompactTarget, TargetError, check_work};
use phalanx_chain::{Block, BlockHeader, Hash, Height};
use phalanx_consensus::protocol::WorkRequest;
use prometheus_client::metrics::counter::Counter;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Found blocks waiting for the driver, at most.
pub const MINED_QUEUE: usize = 4;
/// The most miner threads a node may run.
pub const MAX_MINER_THREADS: usize = 256;
/// Hashes between two checks for new work when the rate is not limited.
const MAX_CHUNK: u64 = 2_048;
/// A paced thread hashes in chunks of this fraction of a second's share.
const CHUNKS_PER_SECOND: u64 = 100;
/// How long a thread that found a block the driver had no room for waits
/// before searching on.
const FULL_QUEUE_BACKOFF: Duration = Duration::from_millis(10);
/// How far a paced thread that fell behind may catch up at once.
pub const MAX_BURST: Duration = Duration::from_millis(100);
/// The most blocks [`MinerControl::mine_now`] keeps asked for at once.
pub const MAX_ON_DEMAND_BLOCKS: u64 = 1_000;

/// How a miner runs.
#[derive(Debug, Clone, Copy)]
pub struct MinerConfig {
    /// Hashing threads (at least 1).
    pub threads: usize,
    /// Hashes per second for the whole miner, at most (0: unlimited).
    pub hashrate_limit: u64,
    /// The wall clock, in milliseconds since the Unix epoch (tests give
    /// their own).
    pub clock: fn() -> u64,
}

/// What the miner counts (shared with `/metrics`).
#[derive(Debug, Clone, Default)]
pub struct MinerCounters {
    /// Hashes tried.
    pub hashes: Counter,
    /// Blocks found and handed to the driver.
    pub blocks: Counter,
}

/// A block the miner found, for the work of `generation`.
#[derive(Debug)]
pub struct Found {
    pub generation: u64,
    pub block: Box<Block>,
}

/// Why the miner refused a template (the work in progress is dropped all
/// the same).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkError {
    #[error("the template at height {height} has no proof-of-work seal")]
    NotProofOfWork { height: Height },
    #[error("the template at height {height}: {error}")]
    BadTarget { height: Height, error: TargetError },
    #[error("the template at height {height} says its parent is {header}, the request {request}")]
    WrongParent {
        height: Height,
        header: Hash,
        request: Hash,
    },
}

/// One template being mined.
#[derive(Debug)]
struct Job {
    generation: u64,
    template: Block,
    bits: CompactTarget,
    /// The target as a big-endian 256-bit number, compared with hashes
    /// as bytes.
    target: [u8; 32],
}

#[derive(Debug)]
struct State {
    generation: u64,
    job: Option<Arc<Job>>,
    stopping: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when the generation changes or the miner stops.
    changed: Condvar,
    /// The current generation, read by the threads between chunks.
    generation: AtomicU64,
    /// Threads searching a job right now.
    active: AtomicUsize,
    /// Blocks still to be found at full speed ([`MinerControl::mine_now`]);
    /// changed under `state`'s lock, so a paused thread cannot miss it.
    on_demand: AtomicU64,
    found: mpsc::Sender<Found>,
    counters: MinerCounters,
    config: MinerConfig,
}

/// A running miner; stops its threads when dropped (without waiting for
/// them: [`Miner::stop`] waits).
#[derive(Debug)]
pub struct Miner {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // No code panics while holding it; a poisoned lock is still consistent.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Miner {
    /// Starts `config.threads` idle threads; found blocks go to `found`.
    pub fn start(
        config: MinerConfig,
        counters: MinerCounters,
        found: mpsc::Sender<Found>,
    ) -> std::io::Result<Miner> {
        let threads = config.threads.clamp(1, MAX_MINER_THREADS);
        let config = MinerConfig { threads, ..config };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                generation: 0,
                job: None,
                stopping: false,
            }),
            changed: Condvar::new(),
            generation: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            on_demand: AtomicU64::new(0),
            found,
            counters,
            config,
        });
        let mut miner = Miner {
            shared,
            workers: Vec::with_capacity(threads),
        };
        for index in 0..threads {
            let shared = Arc::clone(&miner.shared);
            let worker = std::thread::Builder::new()
                .name(format!("phalanx-miner-{index}"))
                .spawn(move || work(&shared, index))?;
            miner.workers.push(worker);
        }
        Ok(miner)
    }

    /// Drops the work in progress and mines `work` instead. Returns the
    /// new work's generation (found blocks carry it). A template the
    /// miner cannot mine is refused, and nothing is mined until the next.
    pub fn submit(&self, work: WorkRequest) -> Result<u64, WorkError> {
        let prepared = prepare(work);
        let mut state = lock(&self.shared.state);
        state.generation += 1;
        let generation = state.generation;
        let (job, answer) = match prepared {
            Ok((template, bits, target)) => {
                let job = Job {
                    generation,
                    template,
                    bits,
                    target,
                };
                (Some(Arc::new(job)), Ok(generation))
            }
            Err(error) => (None, Err(error)),
        };
        state.job = job;
        self.shared.generation.store(generation, Ordering::Release);
        drop(state);
        self.shared.changed.notify_all();
        answer
    }

    /// Drops the work in progress.
    pub fn cancel(&self) {
        let mut state = lock(&self.shared.state);
        state.generation += 1;
        state.job = None;
        self.shared
            .generation
            .store(state.generation, Ordering::Release);
        drop(state);
        self.shared.changed.notify_all();
    }

    /// The generation of the latest work (or cancellation).
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// Hashes tried so far.
    pub fn hashes(&self) -> u64 {
        self.shared.counters.hashes.get()
    }

    /// Threads searching nonces right now (0 while there is no work).
    pub fn active_threads(&self) -> usize {
        self.shared.active.load(Ordering::Acquire)
    }

    /// The miner's threads.
    pub fn threads(&self) -> usize {
        self.shared.config.threads
    }

    /// Its limit, in hashes per second (0: none).
    pub fn hashrate_limit(&self) -> u64 {
        self.shared.config.hashrate_limit
    }

    /// The driver took a block this miner found (one it did not drop for
    /// being mined for replaced work): one fewer is asked for on demand.
    pub fn took_block(&self) {
        let _ = self
            .shared
            .on_demand
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// A handle for mining blocks on demand, which does not keep the
    /// miner alive.
    pub fn control(&self) -> MinerControl {
        MinerControl {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Tells the threads to stop, without waiting.
    fn signal_stop(&self) {
        let mut state = lock(&self.shared.state);
        state.stopping = true;
        state.generation += 1;
        state.job = None;
        self.shared
            .generation
            .store(state.generation, Ordering::Release);
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Stops the threads and waits for them (each notices within one
    /// chunk of hashes).
    pub fn stop(mut self) {
        self.signal_stop();
        for worker in self.workers.drain(..) {
            if worker.join().is_err() {
                tracing::error!("a miner thread panicked");
            }
        }
    }
}

impl Drop for Miner {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// Asks a running miner for blocks now ([`Miner::control`]); cheap to
/// clone, and never blocks for longer than the miner's own lock is held.
#[derive(Debug, Clone)]
pub struct MinerControl {
    shared: Weak<Shared>,
}

/// Why blocks on demand were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MineNowError {
    #[error("the miner has stopped")]
    Stopped,
}

impl MinerControl {
    /// Hash at full speed until `blocks` more blocks are found (added to
    /// any blocks still asked for, up to [`MAX_ON_DEMAND_BLOCKS`]).
    /// Returns the blocks now asked for.
    pub fn mine_now(&self, blocks: u64) -> Result<u64, MineNowError> {
        let shared = self.shared.upgrade().ok_or(MineNowError::Stopped)?;
        let state = lock(&shared.state);
        if state.stopping {
            return Err(MineNowError::Stopped);
        }
        let before = shared.on_demand.load(Ordering::Acquire);
        let total = before.saturating_add(blocks).min(MAX_ON_DEMAND_BLOCKS);
        shared.on_demand.store(total, Ordering::Release);
        drop(state);
        shared.changed.notify_all();
        Ok(total)
    }

    /// Blocks still asked for (0 once the miner has stopped).
    pub fn on_demand(&self) -> u64 {
        self.shared
            .upgrade()
            .map_or(0, |shared| shared.on_demand.load(Ordering::Acquire))
    }
}

impl PartialEq for MinerControl {
    fn eq(&self, other: &Self) -> bool {
        Weak::ptr_eq(&self.shared, &other.shared)
    }
}

impl Eq for MinerControl {}

/// Checks a request and reads its target.
fn prepare(work: WorkRequest) -> Result<(Block, CompactTarget, [u8; 32]), WorkError> {
    let template = *work.template;
    let height = template.header().height;
    if template.header().parent != work.parent {
        return Err(WorkError::WrongParent {
            height,
            header: template.header().parent,
            request: work.parent,
        });
    }
    let bits = template
        .header()
        .pow_seal()
        .ok_or(WorkError::NotProofOfWork { height })?
        .target;
    let target = bits
        .target()
        .map_err(|error| WorkError::BadTarget { height, error })?;
    let digits = target.to_bytes_be();
    let mut bytes = [0u8; 32];
    let Some(start) = bytes.len().checked_sub(digits.len()) else {
        // `target()` refuses targets over 256 bits; this is that check.
        return Err(WorkError::BadTarget {
            height,
            error: TargetError::Overflow(bits),
        });
    };
    for (slot, digit) in bytes.iter_mut().skip(start).zip(digits) {
        *slot = digit;
    }
    Ok((template, bits, bytes))
}

/// A thread's life: take each new job until the miner stops.
fn work(shared: &Shared, index: usize) {
    let mut last = 0;
    while let Some(job) = shared.next_job(last) {
        last = job.generation;
        let rate = thread_rate(shared.config.hashrate_limit, shared.config.threads, index);
        if rate == Some(0) {
            // This thread's share of the limit is nothing: it idles.
            continue;
        }
        shared.active.fetch_add(1, Ordering::AcqRel);
        search(shared, &job, index, rate);
        shared.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Shared {
    /// Waits for a job other than generation `after`; `None` once the
    /// miner stops.
    fn next_job(&self, after: u64) -> Option<Arc<Job>> {
        let mut state = lock(&self.state);
        loop {
            if state.stopping {
                return None;
            }
            if let Some(job) = &state.job
                && job.generation != after
            {
                return Some(Arc::clone(job));
            }
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn is_current(&self, generation: u64) -> bool {
        self.generation.load(Ordering::Acquire) == generation
    }

    /// True while blocks are asked for on demand.
    fn on_demand(&self) -> bool {
        self.on_demand.load(Ordering::Acquire) > 0
    }

    /// Sleeps up to `wait`, waking early if the generation moves on, or,
    /// for a pacing wait (`paced`), if blocks are asked for on demand.
    fn pause(&self, generation: u64, wait: Duration, paced: bool) {
        let deadline = Instant::now() + wait;
        let mut state = lock(&self.state);
        while state.generation == generation && !state.stopping && !(paced && self.on_demand()) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            state = match self.changed.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Retires `job`'s generation and hands its block to the driver,
    /// unless other work replaced it meanwhile. Returns false if the
    /// driver's queue is full: the job is not retired, and the thread
    /// searches on (a block found later takes the place of this one).
    fn deliver(&self, job: &Job, header: BlockHeader) -> bool {
        let block = Block::new(header, job.template.transactions.clone());
        if let Err(error) = check_work(&block.header().pow_hash(), job.bits) {
            tracing::error!(%error, "the miner sealed a block that does not meet its target; dropped");
            return false;
        }
        let (height, hash) = (block.header().height, block.hash());
        let permit = match self.found.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Full(())) => {
                tracing::debug!(%height, %hash, "mined a block, but the driver is not taking them; searching on");
                return false;
            }
            // The driver is gone: the miner is stopping.
            Err(mpsc::error::TrySendError::Closed(())) => return true,
        };
        let mut state = lock(&self.state);
        if state.generation != job.generation {
            return true;
        }
        state.generation += 1;
        state.job = None;
        self.generation.store(state.generation, Ordering::Release);
        drop(state);
        self.changed.notify_all();
        self.counters.blocks.inc();
        tracing::info!(%height, %hash, "mined a block");
        permit.send(Found {
            generation: job.generation,
            block: Box::new(block),
        });
        true
    }
}

/// Thread `index`'s share of `limit` hashes per second among `threads`
/// (`None`: unlimited).
pub fn thread_rate(limit: u64, threads: usize, index: usize) -> Option<u64> {
    if limit == 0 {
        return None;
    }
    let threads = threads.max(1) as u64;
    let index = index as u64;
    Some(limit / threads + u64::from(index < limit % threads))
}

/// Hashes between checks for a thread hashing at `rate` per second.
pub fn chunk_size(rate: Option<u64>) -> u64 {
    match rate {
        None => MAX_CHUNK,
        Some(rate) => (rate / CHUNKS_PER_SECOND).clamp(1, MAX_CHUNK),
    }
}

/// How long a thread that has done `done` hashes in `elapsed`, at `rate`
/// hashes per second, must wait before hashing more.
pub fn pace(done: u64, rate: u64, elapsed: Duration) -> Duration {
    if rate == 0 {
        return Duration::ZERO;
    }
    let due_nanos = u128::from(done) * 1_000_000_000 / u128::from(rate);
    let due = Duration::from_nanos(u64::try_from(due_nanos).unwrap_or(u64::MAX));
    due.saturating_sub(elapsed)
}

/// Paces one thread (see [`pace`]).
#[derive(Debug)]
struct Pacer {
    rate: u64,
    start: Instant,
    done: u64,
}

impl Pacer {
    /// After `hashes` more, how long to wait. A thread more than
    /// [`MAX_BURST`] behind (it was not scheduled for a while) is
    /// forgiven the rest, so it does not race to catch up.
    fn after(&mut self, hashes: u64, now: Instant) -> Duration {
        self.done = self.done.saturating_add(hashes);
        let elapsed = now.saturating_duration_since(self.start);
        let due = pace(self.done, self.rate, Duration::ZERO);
        let behind = elapsed.saturating_sub(due);
        if behind > MAX_BURST {
            self.start += behind - MAX_BURST;
        }
        due.saturating_sub(elapsed)
    }
}

/// The header to hash at `now_ms`: the template's, with the timestamp
/// raised to the clock (never lowered).
fn stamp(header: &mut BlockHeader, template_ms: u64, now_ms: u64) -> bool {
    let timestamp_ms = now_ms.max(template_ms);
    if timestamp_ms == header.timestamp_ms {
        return false;
    }
    header.timestamp_ms = timestamp_ms;
    true
}

/// Searches `job` until it is solved, replaced or the miner stops.
fn search(shared: &Shared, job: &Job, index: usize, rate: Option<u64>) {
    let stride = shared.config.threads.max(1) as u64;
    let first = index as u64;
    let template_ms = job.template.header().timestamp_ms;
    let mut header = job.template.header().clone();
    stamp(&mut header, template_ms, (shared.config.clock)());
    let Some(mut prefix) = header.mining_prefix() else {
        return;
    };
    let mut bytes = Vec::with_capacity(prefix.len() + 10);
    let mut nonce = Some(first);
    let paced_chunk = chunk_size(rate);
    let mut pacer = rate.map(|rate| Pacer {
        rate,
        start: Instant::now(),
        done: 0,
    });
    let mut was_on_demand = false;
    while shared.is_current(job.generation) {
        // On demand: full speed; back to the limit afterwards, from now
        // (the hashes done meanwhile are not caught up on).
        let on_demand = shared.on_demand();
        if was_on_demand
            && !on_demand
            && let Some(pacer) = &mut pacer
        {
            pacer.start = Instant::now();
            pacer.done = 0;
        }
        was_on_demand = on_demand;
        let chunk = if on_demand { MAX_CHUNK } else { paced_chunk };
        if stamp(&mut header, template_ms, (shared.config.clock)()) {
            let Some(fresh) = header.mining_prefix() else {
                return;
            };
            prefix = fresh;
            nonce = Some(first);
        }
        let mut done = 0;
        let mut undelivered = false;
        while done < chunk {
            // Every nonce of this header was tried: wait for the clock.
            let Some(n) = nonce else { break };
            bytes.clear();
            bytes.extend_from_slice(&prefix);
            push_varint(&mut bytes, n);
            let hash = phalanx_crypto::sha256d(&bytes);
            done += 1;
            nonce = n.checked_add(stride);
            if hash <= job.target {
                let mut sealed = header.clone();
                if let Some(seal) = pow_seal_mut(&mut sealed) {
                    seal.nonce = n;
                }
                // Counted before the block can reach anyone.
                shared.counters.hashes.inc_by(done);
                if shared.deliver(job, sealed) {
                    return;
                }
                undelivered = true;
                break;
            }
        }
        if !undelivered {
            shared.counters.hashes.inc_by(done);
        }
        let mut wait = match (&mut pacer, nonce) {
            (Some(pacer), Some(_)) if !on_demand => pacer.after(done, Instant::now()),
            (_, Some(_)) => Duration::ZERO,
            (_, None) => Duration::from_millis(1),
        };
        let paced = !undelivered && nonce.is_some();
        if undelivered {
            wait = wait.max(FULL_QUEUE_BACKOFF);
        }
        if !wait.is_zero() {
            shared.pause(job.generation, wait, paced);
        }
    }
}

fn pow_seal_mut(header: &mut BlockHeader) -> Option<&mut phalanx_chain::PowSeal> {
    match &mut header.justification {
        phalanx_chain::Justification::ProofOfWork(seal) => Some(seal),
        _ => None,
    }
}

/// Hashes per second between readings of the hash counter (for
/// `/status` and the hash-rate gauge).
#[derive(Debug, Default)]
pub struct RateMeter {
    last: Option<(Instant, u64)>,
}

impl RateMeter {
    /// The rate since the previous reading (`None` at the first, or when
    /// no time passed).
    pub fn sample(&mut self, now: Instant, total: u64) -> Option<u64> {
        let previous = self.last.replace((now, total));
        let (then, before) = previous?;
        let elapsed = now.saturating_duration_since(then);
        if elapsed.is_zero() {
            self.last = previous;
            return None;
        }
        let hashes = total.saturating_sub(before);
        let rate = u128::from(hashes) * 1_000_000 / elapsed.as_micros().max(1);
        Some(u64::try_from(rate).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_chain::{Address, Amount, Justification, PowSeal};

    /// Generous deadline for anything that could hang; never a timing
    /// assertion.
    const DEADLINE: Duration = Duration::from_secs(30);
    /// Half of all hashes meet it.
    const EASY: CompactTarget = CompactTarget(0x207f_ffff);
    /// The target 1: no hash meets it in practice.
    const IMPOSSIBLE: CompactTarget = CompactTarget(0x0101_0000);
    const TEMPLATE_MS: u64 = 1_000_000;

    fn later_clock() -> u64 {
        TEMPLATE_MS + 5_000
    }

    fn earlier_clock() -> u64 {
        TEMPLATE_MS - 5_000
    }

    fn template(parent: u8, target: CompactTarget) -> WorkRequest {
        let parent = Hash::digest(&[parent]);
        let header = BlockHeader {
            height: Height(7),
            parent,
            tx_root: Hash::ZERO,
            state_root: Hash::ZERO,
            timestamp_ms: TEMPLATE_MS,
            proposer: Address([3; 32]),
            justification: Justification::ProofOfWork(PowSeal {
                target,
                reward: Amount(50),
                nonce: 0,
            }),
        };
        WorkRequest {
            parent,
            template: Box::new(Block::new(header, Vec::new())),
        }
    }

    fn miner(threads: usize, limit: u64, clock: fn() -> u64) -> (Miner, mpsc::Receiver<Found>) {
        let (tx, rx) = mpsc::channel(MINED_QUEUE);
        let config = MinerConfig {
            threads,
            hashrate_limit: limit,
            clock,
        };
        let miner = Miner::start(config, MinerCounters::default(), tx).unwrap();
        (miner, rx)
    }

    async fn next(rx: &mut mpsc::Receiver<Found>) -> Found {
        tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .expect("no block within the deadline")
            .expect("the miner hung up")
    }

    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < DEADLINE, "gave up waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[test]
    fn the_test_targets_are_canonical() {
        assert!(EASY.target().is_ok());
        assert_eq!(IMPOSSIBLE.target().unwrap().to_bytes_be(), vec![1]);
    }

    #[tokio::test]
    async fn finds_a_block_that_meets_its_target_with_the_clock_as_timestamp() {
        let (miner, mut rx) = miner(2, 0, later_clock);
        let work = template(1, EASY);
        let generation = miner.submit(work.clone()).unwrap();
        let found = next(&mut rx).await;
        assert_eq!(found.generation, generation);
        let header = found.block.header();
        check_work(&header.pow_hash(), EASY).unwrap();
        assert_eq!(header.timestamp_ms, later_clock());
        // Only the timestamp and the nonce differ from the template.
        let mut expected = work.template.header().clone();
        expected.timestamp_ms = header.timestamp_ms;
        if let (Some(seal), Some(found_seal)) = (pow_seal_mut(&mut expected), header.pow_seal()) {
            seal.nonce = found_seal.nonce;
        }
        assert_eq!(*header, expected);
        assert_eq!(found.block.transactions, work.template.transactions);
        assert_eq!(miner.shared.counters.blocks.get(), 1);
        assert!(miner.hashes() >= 1);
        // The job is retired: the threads go idle until new work.
        wait_until("idle threads", || miner.active_threads() == 0).await;
        assert!(rx.try_recv().is_err(), "one block per request");
        miner.stop();
    }

    #[tokio::test]
    async fn never_stamps_a_block_earlier_than_its_template() {
        let (miner, mut rx) = miner(1, 0, earlier_clock);
        miner.submit(template(1, EASY)).unwrap();
        let found = next(&mut rx).await;
        assert_eq!(found.block.header().timestamp_ms, TEMPLATE_MS);
        check_work(&found.block.header().pow_hash(), EASY).unwrap();
        miner.stop();
    }

    #[tokio::test]
    async fn new_work_replaces_the_work_in_progress() {
        // One thread: if it stayed on the impossible work, the easy work
        // would never be found.
        let (miner, mut rx) = miner(1, 0, later_clock);
        let old = miner.submit(template(1, IMPOSSIBLE)).unwrap();
        wait_until("hashing the first work", || miner.hashes() > 0).await;
        let new_work = template(2, EASY);
        let new = miner.submit(new_work.clone()).unwrap();
        assert!(new > old);
        let found = next(&mut rx).await;
        assert_eq!(found.generation, new);
        assert_eq!(found.block.header().parent, new_work.parent);
        miner.stop();
    }

    #[tokio::test]
    async fn cancel_and_refused_templates_leave_the_threads_idle() {
        let (miner, _rx) = miner(2, 0, later_clock);
        miner.submit(template(1, IMPOSSIBLE)).unwrap();
        wait_until("both threads busy", || miner.active_threads() == 2).await;
        miner.cancel();
        wait_until("idle after cancel", || miner.active_threads() == 0).await;
        let counted = miner.hashes();
        miner.submit(template(1, IMPOSSIBLE)).unwrap();
        wait_until("busy again", || miner.hashes() > counted).await;

        let mut not_pow = template(1, EASY);
        not_pow.template.header_mut().justification = Justification::Genesis;
        assert_eq!(
            miner.submit(not_pow),
            Err(WorkError::NotProofOfWork { height: Height(7) })
        );
        wait_until("idle after a refused template", || {
            miner.active_threads() == 0
        })
        .await;
        let mut wrong_parent = template(1, EASY);
        wrong_parent.parent = Hash::ZERO;
        assert!(matches!(
            miner.submit(wrong_parent),
            Err(WorkError::WrongParent { .. })
        ));
        let bad_target = template(1, CompactTarget(0x0180_0001));
        assert!(matches!(
            miner.submit(bad_target),
            Err(WorkError::BadTarget { .. })
        ));
        miner.stop();
    }

    #[tokio::test]
    async fn a_block_the_driver_has_no_room_for_does_not_end_the_work() {
        let (tx, mut rx) = mpsc::channel(1);
        let config = MinerConfig {
            threads: 1,
            hashrate_limit: 0,
            clock: later_clock,
        };
        let miner = Miner::start(config, MinerCounters::default(), tx.clone()).unwrap();
        // The queue is full before any block is found.
        let filler = Found {
            generation: 0,
            block: template(9, EASY).template,
        };
        tx.try_send(filler).unwrap();
        let generation = miner.submit(template(1, EASY)).unwrap();
        wait_until("blocks found and kept back", || miner.hashes() >= 10).await;
        assert_eq!(miner.generation(), generation, "the work goes on");
        assert_eq!(miner.shared.counters.blocks.get(), 0);
        assert_eq!(next(&mut rx).await.generation, 0);
        let found = next(&mut rx).await;
        assert_eq!(found.generation, generation);
        check_work(&found.block.header().pow_hash(), EASY).unwrap();
        assert_eq!(miner.shared.counters.blocks.get(), 1);
        miner.stop();
    }

    #[test]
    fn stop_joins_busy_threads() {
        let (miner, _rx) = miner(2, 0, later_clock);
        miner.submit(template(1, IMPOSSIBLE)).unwrap();
        let start = Instant::now();
        while miner.active_threads() < 2 {
            assert!(start.elapsed() < DEADLINE);
            std::thread::sleep(Duration::from_millis(5));
        }
        // Returns only once every thread has left its loop.
        miner.stop();
    }

    #[test]
    fn the_limit_is_split_between_threads_without_losing_hashes() {
        assert_eq!(thread_rate(0, 4, 0), None);
        let shares: Vec<u64> = (0..3).map(|i| thread_rate(10, 3, i).unwrap()).collect();
        assert_eq!(shares, vec![4, 3, 3]);
        assert_eq!(thread_rate(1, 2, 1), Some(0));
        assert_eq!(chunk_size(None), MAX_CHUNK);
        assert_eq!(chunk_size(Some(50)), 1);
        assert_eq!(chunk_size(Some(50_000)), 500);
        assert_eq!(chunk_size(Some(u64::MAX)), MAX_CHUNK);
    }

    #[test]
    fn pacing_waits_until_the_hashes_are_due() {
        let ms = Duration::from_millis;
        // 1,000 hashes at 1,000/s are due after one second.
        assert_eq!(pace(1_000, 1_000, ms(0)), ms(1_000));
        assert_eq!(pace(1_000, 1_000, ms(400)), ms(600));
        assert_eq!(pace(1_000, 1_000, ms(1_500)), Duration::ZERO);
        assert_eq!(pace(u64::MAX, 1, ms(0)), Duration::from_nanos(u64::MAX));
        assert_eq!(pace(5, 0, ms(0)), Duration::ZERO);

        let start = Instant::now();
        let mut pacer = Pacer {
            rate: 100,
            start,
            done: 0,
        };
        assert_eq!(pacer.after(10, start), ms(100));
        assert_eq!(pacer.after(10, start + ms(100)), ms(100));
        // Two seconds late: only MAX_BURST of it may be caught up.
        assert_eq!(pacer.after(10, start + ms(2_300)), Duration::ZERO);
        assert_eq!(pacer.start, start + ms(2_300) - ms(300) - MAX_BURST);
        let catch_up = MAX_BURST.as_millis() as u64 / 10;
        assert_eq!(pacer.after(catch_up, start + ms(2_300)), Duration::ZERO);
        assert_eq!(pacer.after(1, start + ms(2_300)), ms(10));
    }

    #[tokio::test]
    async fn a_limited_miner_stays_near_its_limit() {
        const LIMIT: u64 = 2_000;
        let (miner, _rx) = miner(2, LIMIT, later_clock);
        let start = Instant::now();
        miner.submit(template(1, IMPOSSIBLE)).unwrap();
        wait_until("some hashing", || miner.hashes() >= 200).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let hashes = miner.hashes();
        let elapsed = start.elapsed();
        miner.stop();
        // Pacing allows the rate times the time, plus a chunk per thread;
        // twice that is a loose bound that a slow machine cannot break.
        let allowed = 2.0 * (LIMIT as f64 * elapsed.as_secs_f64()) + 2.0 * 2.0 * 10.0;
        assert!(
            (hashes as f64) <= allowed,
            "{hashes} hashes in {elapsed:?} at a limit of {LIMIT}/s"
        );
    }

    /// One hash in 256 meets it.
    const HARD: CompactTarget = CompactTarget(0x2001_0000);

    #[tokio::test]
    async fn blocks_on_demand_ignore_the_limit_until_found_then_the_limit_holds() {
        // One hash a second: a block at this target takes minutes paced,
        // so finding three before the deadline means the limit was off.
        let (miner, mut rx) = miner(1, 1, later_clock);
        let control = miner.control();
        assert_eq!(control.on_demand(), 0);
        assert_eq!(control.mine_now(3), Ok(3));
        for parent in 1..=3u8 {
            // As the driver does: new work after each block.
            let generation = miner.submit(template(parent, HARD)).unwrap();
            let found = next(&mut rx).await;
            assert_eq!(found.generation, generation);
            check_work(&found.block.header().pow_hash(), HARD).unwrap();
            miner.took_block();
            assert_eq!(control.on_demand(), u64::from(3 - parent));
        }
        assert_eq!(miner.shared.counters.blocks.get(), 3);

        // Back to the limit: at one hash a second, a few at most.
        let before = miner.hashes();
        let start = Instant::now();
        miner.submit(template(9, IMPOSSIBLE)).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let hashed = miner.hashes() - before;
        let allowed = 2.0 * start.elapsed().as_secs_f64() + 2.0;
        assert!(
            (hashed as f64) <= allowed,
            "{hashed} hashes after the blocks on demand"
        );
        miner.stop();
    }

    #[tokio::test]
    async fn work_in_progress_speeds_up_for_blocks_on_demand() {
        // One hash a second for each of two threads, and work that no hash
        // meets: both threads sleep between hashes.
        let (miner, _rx) = miner(2, 2, later_clock);
        miner.submit(template(1, IMPOSSIBLE)).unwrap();
        wait_until("paced hashing", || miner.hashes() >= 2).await;
        miner.control().mine_now(1).unwrap();
        // Unpaced, the same work gets thousands of hashes before the
        // deadline; paced, about one a second.
        let before = miner.hashes();
        wait_until("full speed", || miner.hashes() >= before + 10_000).await;
        miner.stop();
    }

    #[tokio::test]
    async fn a_pacing_pause_ends_when_blocks_are_asked_for() {
        let (miner, _rx) = miner(1, 1, later_clock);
        let generation = miner.generation();
        let shared = Arc::clone(&miner.shared);
        // Far longer than the deadline: only the request can end it.
        let paused =
            std::thread::spawn(move || shared.pause(generation, Duration::from_secs(3_600), true));
        miner.control().mine_now(1).unwrap();
        wait_until("the pause to end", || paused.is_finished()).await;
        miner.stop();
    }

    #[test]
    fn requests_add_up_to_the_cap_and_a_stopped_miner_refuses() {
        let (miner, _rx) = miner(1, 10, later_clock);
        let control = miner.control();
        assert_eq!(control.mine_now(600), Ok(600));
        assert_eq!(control.mine_now(600), Ok(MAX_ON_DEMAND_BLOCKS));
        assert_eq!(control.on_demand(), MAX_ON_DEMAND_BLOCKS);
        assert_eq!(control.mine_now(u64::MAX), Ok(MAX_ON_DEMAND_BLOCKS));
        assert_eq!(control, miner.control());
        miner.stop();
        assert_eq!(control.mine_now(1), Err(MineNowError::Stopped));
        assert_eq!(control.on_demand(), 0);
    }

    #[test]
    fn the_rate_meter_divides_new_hashes_by_the_time_between_readings() {
        let mut meter = RateMeter::default();
        let t = Instant::now();
        assert_eq!(meter.sample(t, 100), None);
        assert_eq!(meter.sample(t, 100), None);
        assert_eq!(meter.sample(t + Duration::from_secs(2), 5_100), Some(2_500));
        assert_eq!(
            meter.sample(t + Duration::from_millis(2_500), 5_100),
            Some(0)
        );
    }
}
