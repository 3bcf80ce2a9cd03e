//! `phalanx-testnet load`: signed transfers at a steady rate, and how long
//! each took to be final.
//!
//! Every funded account (`accounts/<j>.json`, the first K) sends transfers
//! of 1 (fee 1) to a fresh address. Account j always submits to the same
//! node (j mod the nodes that answered at the start), so that node's
//! `pending_nonce` stays right for it; accounts take turns, one
//! transaction per tick of `1 / --tps` seconds, so the load is spread
//! evenly over accounts and nodes. Nonces are tracked here: a transaction
//! the node refused for a reason that may pass (`mempool_full`,
//! `nonce_gap`, a network error) gives its nonce back to be sent again,
//! so no account is left with a gap. An account never has more than
//! [`MAX_PENDING_PER_ACCOUNT`] transactions not yet final (the node's
//! nonce window); a tick that finds every account at that bound is
//! counted as skipped rather than queued.
//!
//! Finality is observed on one node (the first that answered): its
//! `GET /events` stream announces each committed block, whose transaction
//! hashes are then read with `GET /blocks/{height}`; every height is
//! read once, so a `lagged` event or a dropped stream loses nothing. A
//! transaction's latency runs from just before its `POST /txs` to the
//! arrival of the event of the block that holds it (on BFT chains a
//! committed block is final). With proof of work a committed block may
//! still be reverted, so the follower goes by the stream's `finalized`
//! events instead (and the node's `finalized_height` when it polls): a
//! transaction's latency runs to the moment its block has the genesis
//! `confirmations`. If the stream fails, the follower polls `GET /status`
//! and tries the next node.

use super::DirArg;
use super::client::{Client, Submitted};
use super::net::{Network, NodeInfo};
use anyhow::{Context, anyhow, bail, ensure};
use indicatif::{ProgressBar, ProgressStyle};
use phalanx_chain::{Address, Amount, ChainId, Nonce, Transaction};
use phalanx_crypto::Keypair;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Transactions of one account submitted and not yet seen final, at most:
/// below the node's default `mempool.max_nonce_gap` (64) with a margin for
/// a submitting node a block or two behind the observing one.
pub const MAX_PENDING_PER_ACCOUNT: usize = 48;
/// `POST /txs` requests in flight, at most.
pub const MAX_IN_FLIGHT: usize = 256;
/// `--tps` above this is refused.
pub const MAX_TPS: f64 = 100_000.0;
/// `--duration` above this (seconds) is refused.
pub const MAX_DURATION_SECS: u64 = 3_600;
/// Transactions planned for one run, at most.
pub const MAX_PLANNED: u64 = 2_000_000;
/// Heights read in one catch-up, at most (the rest on the next round).
const MAX_CATCH_UP: u64 = 1_000;
/// Largest server-sent event kept while reading the stream.
const MAX_EVENT_BYTES: usize = 64 * 1024;

/// `phalanx-testnet load`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Transactions per second to submit.
    #[arg(long)]
    pub tps: f64,
    /// How long to submit, in seconds.
    #[arg(long)]
    pub duration: u64,
    /// Funded accounts to send from [default: all of accounts/].
    #[arg(long)]
    pub accounts: Option<usize>,
    /// After submitting, wait at most this many seconds for the last
    /// transactions to be final.
    #[arg(long, default_value_t = 30)]
    pub drain: u64,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub dir: DirArg,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub target_tps: f64,
    pub duration_s: u64,
    pub accounts: usize,
    /// The nodes transactions were submitted to.
    pub nodes: Vec<usize>,
    /// The node finality was observed on.
    pub observer: usize,
    pub planned: u64,
    /// `POST /txs` requests sent (retries included).
    pub submitted: u64,
    pub accepted: u64,
    /// Refusals by the API's error code.
    pub rejected: BTreeMap<String, u64>,
    /// Requests that got no answer.
    pub errors: u64,
    /// Ticks skipped because every account had its maximum pending.
    pub skipped: u64,
    pub finalized: u64,
    /// Accepted submissions per second over the submission window.
    pub submit_tps: f64,
    /// Final transactions per second, from the first submission to the
    /// last final block.
    pub achieved_tps: f64,
    pub latency_ms_p50: Option<u64>,
    pub latency_ms_p95: Option<u64>,
    pub latency_ms_p99: Option<u64>,
    pub latency_ms_max: Option<u64>,
    /// Proof of work: latency runs to the block's finality (`confirmations`
    /// blocks), not its commit.
    pub final_only: bool,
    /// The last error a request got, if any.
    pub last_error: Option<String>,
}

/// A submitted transaction not yet seen in a block.
#[derive(Debug, Clone, Copy)]
struct Pending {
    submitted: Instant,
    account: usize,
}

/// Shared by the submitter and the follower.
#[derive(Debug, Default)]
struct Tracker {
    pending: HashMap<String, Pending>,
    /// Per account: submitted and not final.
    outstanding: Vec<usize>,
    latencies_ms: Vec<u64>,
    finalized: u64,
    last_final: Option<Instant>,
}

impl Tracker {
    fn track(&mut self, hash: String, pending: Pending) {
        if self.pending.insert(hash, pending).is_none()
            && let Some(n) = self.outstanding.get_mut(pending.account)
        {
            *n += 1;
        }
    }

    fn forget(&mut self, hash: &str) {
        if let Some(p) = self.pending.remove(hash)
            && let Some(n) = self.outstanding.get_mut(p.account)
        {
            *n = n.saturating_sub(1);
        }
    }

    fn finalize(&mut self, hash: &str, seen: Instant) {
        if let Some(p) = self.pending.remove(hash) {
            if let Some(n) = self.outstanding.get_mut(p.account) {
                *n = n.saturating_sub(1);
            }
            let ms = seen.saturating_duration_since(p.submitted).as_millis();
            self.latencies_ms
                .push(u64::try_from(ms).unwrap_or(u64::MAX));
            self.finalized += 1;
            self.last_final = Some(seen);
        }
    }
}

fn lock(tracker: &Mutex<Tracker>) -> MutexGuard<'_, Tracker> {
    tracker.lock().unwrap_or_else(|p| p.into_inner())
}

/// One sending account.
#[derive(Debug)]
struct Sender {
    key: Keypair,
    /// Index into the live nodes.
    node: usize,
    next_nonce: u64,
    /// Nonces given back by refused transactions, sent again first.
    retry: BTreeSet<u64>,
}

impl Sender {
    fn take_nonce(&mut self) -> u64 {
        self.retry.pop_first().unwrap_or_else(|| {
            let nonce = self.next_nonce;
            self.next_nonce += 1;
            nonce
        })
    }
}

/// Codes after which the nonce was not used and should be sent again.
fn retryable(code: &str) -> bool {
    matches!(code, "mempool_full" | "nonce_gap" | "timeout" | "internal")
        || code.starts_with("http_")
}

/// Runs `load`.
pub fn load(args: &LoadArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    ensure!(
        args.tps > 0.0 && args.tps <= MAX_TPS,
        "--tps must be above 0 and at most {MAX_TPS}"
    );
    ensure!(
        (1..=MAX_DURATION_SECS).contains(&args.duration),
        "--duration must be between 1 and {MAX_DURATION_SECS} seconds"
    );
    let planned = (args.tps * args.duration as f64).round() as u64;
    ensure!(
        (1..=MAX_PLANNED).contains(&planned),
        "--tps x --duration must plan between 1 and {MAX_PLANNED} transactions"
    );
    let net = Network::open(&args.dir.dir)?;
    let client = Client::new()?;
    let report = super::runtime()?.block_on(run(&net, &client, args, planned))?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_report(&report, out)?;
    }
    if report.accepted == 0 {
        bail!(
            "no transaction was accepted{}",
            report
                .last_error
                .as_ref()
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn print_report(r: &LoadReport, out: &mut dyn Write) -> anyhow::Result<()> {
    let nodes: Vec<String> = r.nodes.iter().map(|n| n.to_string()).collect();
    writeln!(
        out,
        "load: {} tx/s for {} s from {} accounts to nodes {} (finality seen on node {})",
        r.target_tps,
        r.duration_s,
        r.accounts,
        nodes.join(", "),
        r.observer
    )?;
    writeln!(out, "submitted  {} of {} planned", r.submitted, r.planned)?;
    writeln!(out, "accepted   {} ({:.1} tx/s)", r.accepted, r.submit_tps)?;
    let rejected: u64 = r.rejected.values().sum();
    let codes: Vec<String> = r.rejected.iter().map(|(c, n)| format!("{c} {n}")).collect();
    writeln!(
        out,
        "rejected   {rejected}{}",
        if codes.is_empty() {
            String::new()
        } else {
            format!(" ({})", codes.join(", "))
        }
    )?;
    if r.errors > 0 || r.skipped > 0 {
        writeln!(
            out,
            "unsent     {} requests without an answer, {} ticks skipped (every account had \
             {MAX_PENDING_PER_ACCOUNT} pending: more accounts, `up --fresh --accounts N`, \
             allow more)",
            r.errors, r.skipped
        )?;
    }
    writeln!(out, "finalized  {} of {} accepted", r.finalized, r.accepted)?;
    writeln!(
        out,
        "achieved   {:.1} tx/s final (first submission to last final block)",
        r.achieved_tps
    )?;
    let ms = |v: Option<u64>| v.map_or_else(|| "-".into(), |v| format!("{v} ms"));
    writeln!(
        out,
        "latency    p50 {}, p95 {}, p99 {}, max {} (submission to {})",
        ms(r.latency_ms_p50),
        ms(r.latency_ms_p95),
        ms(r.latency_ms_p99),
        ms(r.latency_ms_max),
        if r.final_only {
            "final block: k confirmations"
        } else {
            "committed block"
        }
    )?;
    Ok(())
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

async fn run(
    net: &Network,
    client: &Client,
    args: &LoadArgs,
    planned: u64,
) -> anyhow::Result<LoadReport> {
    let statuses = futures::future::join_all(net.nodes.iter().map(|n| client.status(n))).await;
    let final_only = net.pow.is_some();
    let mut start_height = 0;
    let mut live: Vec<NodeInfo> = Vec::new();
    for (node, status) in net.nodes.iter().zip(statuses) {
        if let Ok(status) = status {
            start_height = start_height.max(followed_height(&status, final_only));
            live.push(node.clone());
        }
    }
    ensure!(
        !live.is_empty(),
        "no node of {} answers: is the network up?",
        net.dir.display()
    );
    let senders = senders(net, client, &live, args.accounts).await?;
    let observer = live.first().map_or(0, |n| n.index);
    let tracker = Arc::new(Mutex::new(Tracker {
        outstanding: vec![0; senders.len()],
        ..Tracker::default()
    }));
    let (stop_tx, stop_rx) = watch::channel(false);
    let follower = tokio::spawn(follow(
        client.clone(),
        live.clone(),
        Arc::clone(&tracker),
        stop_rx,
        Followed {
            last: start_height,
            final_only,
        },
    ));
    let mut report = LoadReport {
        target_tps: args.tps,
        duration_s: args.duration,
        accounts: senders.len(),
        nodes: live.iter().map(|n| n.index).collect(),
        observer,
        planned,
        submitted: 0,
        accepted: 0,
        rejected: BTreeMap::new(),
        errors: 0,
        skipped: 0,
        finalized: 0,
        submit_tps: 0.0,
        achieved_tps: 0.0,
        latency_ms_p50: None,
        latency_ms_p95: None,
        latency_ms_p99: None,
        latency_ms_max: None,
        final_only,
        last_error: None,
    };
    let start = Instant::now();
    submit_all(
        client,
        &net.chain_id,
        &live,
        senders,
        &tracker,
        args.tps,
        planned,
        &mut report,
    )
    .await;
    let window = start.elapsed().as_secs_f64();
    drain(&tracker, Duration::from_secs(args.drain)).await;
    let _ = stop_tx.send(true);
    let _ = follower.await;
    let t = lock(&tracker);
    let mut sorted = t.latencies_ms.clone();
    sorted.sort_unstable();
    report.finalized = t.finalized;
    report.submit_tps = report.accepted as f64 / window.max(f64::EPSILON);
    report.achieved_tps = t.last_final.map_or(0.0, |last| {
        t.finalized as f64 / last.duration_since(start).as_secs_f64().max(f64::EPSILON)
    });
    report.latency_ms_p50 = percentile(&sorted, 50.0);
    report.latency_ms_p95 = percentile(&sorted, 95.0);
    report.latency_ms_p99 = percentile(&sorted, 99.0);
    report.latency_ms_max = sorted.last().copied();
    Ok(report)
}

/// The sending accounts with their next nonces.
async fn senders(
    net: &Network,
    client: &Client,
    live: &[NodeInfo],
    accounts: Option<usize>,
) -> anyhow::Result<Vec<Sender>> {
    let mut files = net.account_files();
    ensure!(
        !files.is_empty(),
        "no funded accounts in {}",
        net.accounts_dir().display()
    );
    if let Some(k) = accounts {
        ensure!(
            (1..=files.len()).contains(&k),
            "--accounts must be between 1 and {} (the accounts in {})",
            files.len(),
            net.accounts_dir().display()
        );
        files.truncate(k);
    }
    let mut senders = Vec::with_capacity(files.len());
    for (j, file) in files.iter().enumerate() {
        let key = phalanx_crypto::keyfile::load_key_file(file)
            .with_context(|| format!("reading {}", file.display()))?
            .keypair;
        let node_slot = j % live.len();
        let node = live
            .get(node_slot)
            .ok_or_else(|| anyhow!("no node for account {j}"))?;
        let address = Address::from(key.public()).to_string();
        let account = client.account(node, &address).await?;
        senders.push(Sender {
            key,
            node: node_slot,
            next_nonce: account.pending_nonce,
            retry: BTreeSet::new(),
        });
    }
    Ok(senders)
}

type Outcome = (usize, u64, String, anyhow::Result<Submitted>);

/// Submits `planned` transactions, one per tick of `1 / tps` seconds.
#[allow(clippy::too_many_arguments)]
async fn submit_all(
    client: &Client,
    chain_id: &ChainId,
    live: &[NodeInfo],
    mut senders: Vec<Sender>,
    tracker: &Arc<Mutex<Tracker>>,
    tps: f64,
    planned: u64,
    report: &mut LoadReport,
) {
    let bar = ProgressBar::new(planned);
    bar.set_style(
        ProgressStyle::with_template("{spinner} load [{bar:30}] {pos}/{len} sent, {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let sink = Keypair::generate()
        .map(|k| Address::from(k.public()))
        .unwrap_or(Address([7; 32]));
    let period = Duration::from_secs_f64(1.0 / tps);
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks: JoinSet<Outcome> = JoinSet::new();
    let start = tokio::time::Instant::now();
    let mut cursor = 0;
    for k in 0..planned {
        tokio::time::sleep_until(start + period.mul_f64(k as f64)).await;
        while let Some(done) = tasks.try_join_next() {
            settle(done, &mut senders, tracker, report);
        }
        let Some(j) = next_sender(&senders, tracker, &mut cursor) else {
            report.skipped += 1;
            continue;
        };
        let Some(sender) = senders.get_mut(j) else {
            continue;
        };
        let nonce = sender.take_nonce();
        let tx = Transaction::sign(
            &sender.key,
            chain_id.clone(),
            sink,
            Amount(1),
            Amount(1),
            Nonce(nonce),
        );
        let hash = tx.hash().to_string();
        let Some(node) = live.get(sender.node).cloned() else {
            continue;
        };
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            break;
        };
        lock(tracker).track(
            hash.clone(),
            Pending {
                submitted: Instant::now(),
                account: j,
            },
        );
        report.submitted += 1;
        let client = client.clone();
        tasks.spawn(async move {
            let result = client.submit(&node, &tx).await;
            drop(permit);
            (j, nonce, hash, result)
        });
        bar.set_position(k + 1);
        let finalized = lock(tracker).finalized;
        bar.set_message(format!("{} accepted, {finalized} final", report.accepted));
    }
    while let Some(done) = tasks.join_next().await {
        settle(done, &mut senders, tracker, report);
    }
    bar.finish_and_clear();
}

/// The next account, in turn, with room for another pending transaction.
fn next_sender(senders: &[Sender], tracker: &Mutex<Tracker>, cursor: &mut usize) -> Option<usize> {
    let t = lock(tracker);
    let n = senders.len();
    for step in 0..n {
        let j = (*cursor + step) % n;
        if t.outstanding.get(j).copied().unwrap_or(0) < MAX_PENDING_PER_ACCOUNT {
            *cursor = (j + 1) % n;
            return Some(j);
        }
    }
    None
}

/// Counts a finished submission; a refused nonce that may pass later is
/// given back to its account.
fn settle(
    done: Result<Outcome, tokio::task::JoinError>,
    senders: &mut [Sender],
    tracker: &Mutex<Tracker>,
    report: &mut LoadReport,
) {
    let Ok((j, nonce, hash, result)) = done else {
        report.errors += 1;
        return;
    };
    let give_back = match result {
        Ok(Submitted::Accepted) => {
            report.accepted += 1;
            false
        }
        Ok(Submitted::Rejected { code, message }) => {
            lock(tracker).forget(&hash);
            let again = retryable(&code);
            report.last_error = Some(format!("{code}: {message}"));
            *report.rejected.entry(code).or_default() += 1;
            again
        }
        Err(e) => {
            // It may have been admitted before the answer was lost: keep
            // following its hash; sending it again is harmless (the same
            // bytes, refused as a duplicate if it was).
            report.errors += 1;
            report.last_error = Some(format!("{e:#}"));
            true
        }
    };
    if give_back && let Some(sender) = senders.get_mut(j) {
        sender.retry.insert(nonce);
    }
}

/// Waits until nothing is pending, or `limit`.
async fn drain(tracker: &Mutex<Tracker>, limit: Duration) {
    let bar = ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(100));
    let start = Instant::now();
    loop {
        let pending = lock(tracker).pending.len();
        if pending == 0 || start.elapsed() >= limit {
            break;
        }
        bar.set_message(format!("waiting for {pending} transactions to be final"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish_and_clear();
}

/// How far the follower has read, and what it follows.
#[derive(Debug, Clone, Copy)]
struct Followed {
    /// The last height whose transactions were marked final.
    last: u64,
    /// Proof of work: only final blocks (`finalized` events and heights),
    /// not every committed one.
    final_only: bool,
}

/// The height a follower reads up to on a node: its head, or its highest
/// final block with proof of work.
fn followed_height(status: &super::client::Status, final_only: bool) -> u64 {
    if final_only {
        status.finalized_height.unwrap_or(0)
    } else {
        status.height.unwrap_or(0)
    }
}

/// Follows committed (proof of work: final) blocks on the first node of
/// `nodes` (the next one if it fails) and marks their transactions final.
async fn follow(
    client: Client,
    nodes: Vec<NodeInfo>,
    tracker: Arc<Mutex<Tracker>>,
    mut stop: watch::Receiver<bool>,
    mut last: Followed,
) {
    let mut which = 0;
    while !*stop.borrow() {
        let Some(node) = nodes.get(which % nodes.len().max(1)) else {
            return;
        };
        let stream = client
            .http()
            .get(node.url("/events"))
            .timeout(Duration::from_secs(24 * 3_600))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        let ok = match stream {
            Ok(response) => {
                read_events(&client, node, response, &tracker, &mut stop, &mut last).await
            }
            Err(_) => false,
        };
        if !ok {
            // Catch up by polling, then try the next node's stream.
            let _ = catch_up(&client, node, None, &tracker, &mut last).await;
            which += 1;
            tokio::select! {
                _ = stop.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }
}

/// Reads a `GET /events` stream until `stop` (true) or a failure (false).
/// Without an event for a second, polls `/status` in case one was missed.
async fn read_events(
    client: &Client,
    node: &NodeInfo,
    mut response: reqwest::Response,
    tracker: &Mutex<Tracker>,
    stop: &mut watch::Receiver<bool>,
    last: &mut Followed,
) -> bool {
    let mut buffer = String::new();
    loop {
        let chunk = tokio::select! {
            _ = stop.changed() => return true,
            chunk = tokio::time::timeout(Duration::from_secs(1), response.chunk()) => chunk,
        };
        match chunk {
            Err(_) => {
                if catch_up(client, node, None, tracker, last).await.is_err() {
                    return false;
                }
            }
            Ok(Ok(Some(bytes))) => {
                buffer.push_str(&String::from_utf8_lossy(&bytes));
                while let Some(end) = buffer.find("\n\n") {
                    let event: String = buffer.drain(..end + 2).collect();
                    let kind = if last.final_only {
                        "finalized"
                    } else {
                        "block"
                    };
                    if let Some(height) = event_height(&event, kind)
                        && catch_up(client, node, Some(height), tracker, last)
                            .await
                            .is_err()
                    {
                        return false;
                    }
                }
                if buffer.len() > MAX_EVENT_BYTES {
                    return false;
                }
            }
            Ok(Ok(None) | Err(_)) => return false,
        }
    }
}

/// The height of a `block` event.
#[cfg(test)]
fn block_height(event: &str) -> Option<u64> {
    event_height(event, "block")
}

/// The height of an event named `kind` (`block`, or `finalized` with
/// proof of work).
fn event_height(event: &str, kind: &str) -> Option<u64> {
    let mut name = None;
    let mut data = None;
    for line in event.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            name = Some(v.trim());
        } else if let Some(v) = line.strip_prefix("data:") {
            data = Some(v.trim());
        }
    }
    if name != Some(kind) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(data?).ok()?;
    value.get("height")?.as_u64()
}

/// Reads the blocks above `last` up to `head` (or the node's height, or
/// with proof of work its finalized height) and marks their transactions
/// final now.
async fn catch_up(
    client: &Client,
    node: &NodeInfo,
    head: Option<u64>,
    tracker: &Mutex<Tracker>,
    followed: &mut Followed,
) -> anyhow::Result<()> {
    let seen = Instant::now();
    let head = match head {
        Some(h) => h,
        None => followed_height(&client.status(node).await?, followed.final_only),
    };
    let last = &mut followed.last;
    let to = head.min(last.saturating_add(MAX_CATCH_UP));
    while *last < to {
        let height = *last + 1;
        let block = client
            .block(node, height)
            .await?
            .ok_or_else(|| anyhow!("node {} has no block {height}", node.index))?;
        let mut t = lock(tracker);
        for hash in &block.transactions {
            t.finalize(hash, seen);
        }
        drop(t);
        *last = height;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&[7], 95.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn block_events_give_their_height() {
        let event = "event: block\ndata: {\"height\":12,\"hash\":\"00\",\"tx_count\":1,\"timestamp_ms\":0}\n\n";
        assert_eq!(block_height(event), Some(12));
        // Proof of work: final heights come as `finalized` events.
        let finalized = "event: finalized\ndata: {\"height\":3}\n\n";
        assert_eq!(event_height(finalized, "finalized"), Some(3));
        assert_eq!(block_height(finalized), None);
        assert_eq!(event_height(event, "finalized"), None);
        assert_eq!(
            block_height("event: lagged\ndata: {\"missed\":3}\n\n"),
            None
        );
        assert_eq!(block_height(": keep-alive\n\n"), None);
    }

    #[test]
    fn refused_nonces_come_back_first_and_pending_is_bounded_per_account() {
        let mut s = Sender {
            key: Keypair::from_seed(&[1; 32]),
            node: 0,
            next_nonce: 5,
            retry: BTreeSet::new(),
        };
        assert_eq!(s.take_nonce(), 5);
        assert_eq!(s.take_nonce(), 6);
        s.retry.insert(5);
        assert_eq!(s.take_nonce(), 5);
        assert_eq!(s.take_nonce(), 7);
        let tracker = Mutex::new(Tracker {
            outstanding: vec![MAX_PENDING_PER_ACCOUNT, 0],
            ..Tracker::default()
        });
        let senders = vec![
            s,
            Sender {
                key: Keypair::from_seed(&[2; 32]),
                node: 0,
                next_nonce: 0,
                retry: BTreeSet::new(),
            },
        ];
        let mut cursor = 0;
        assert_eq!(next_sender(&senders, &tracker, &mut cursor), Some(1));
        lock(&tracker).outstanding = vec![MAX_PENDING_PER_ACCOUNT; 2];
        assert_eq!(next_sender(&senders, &tracker, &mut cursor), None);
    }

    #[test]
    fn finality_is_counted_once_with_its_latency() {
        let mut t = Tracker {
            outstanding: vec![0],
            ..Tracker::default()
        };
        let at = Instant::now();
        t.track(
            "a".into(),
            Pending {
                submitted: at,
                account: 0,
            },
        );
        t.track(
            "a".into(),
            Pending {
                submitted: at,
                account: 0,
            },
        );
        assert_eq!(t.outstanding, vec![1]);
        t.finalize("a", at + Duration::from_millis(30));
        t.finalize("a", at + Duration::from_millis(40));
        assert_eq!((t.finalized, t.latencies_ms.clone()), (1, vec![30]));
        assert_eq!(t.outstanding, vec![0]);
    }
}
