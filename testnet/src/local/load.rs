//! `phalanx-testnet load`: signed transfers at a steady rate into a running
//! network, and how long each took to be final.
//!
//! The first K funded accounts (`accounts/<j>.json`) send transfers of 1
//! (fee 1) to a fixed address, taking turns, from the nonce each node
//! reports pending. Every transaction is signed before the first is sent
//! ([`crate::bench::plan`]); then `bench`'s engine offers them at `--tps`
//! ([`crate::bench::drive`]): batches every few milliseconds to the nodes
//! that answered at the start (account j sends to node j mod n), at most
//! 48 transactions of an account pending, refusals handled as
//! [`crate::bench::book`] describes (sent again if they may pass, else
//! counted by code). Finality is followed on the first node's event
//! stream ([`crate::bench::follow`]); a transaction's latency runs from its
//! request to the event of the block that holds it (proof of work: to its
//! block's finality at the genesis `confirmations`).

use super::DirArg;
use super::client::Client;
use super::net::{Network, NodeInfo};
use crate::bench::drive::{self, Phases};
use crate::bench::follow::{self, Followed, followed_height};
use crate::bench::plan::{self, MAX_PLANNED};
use crate::bench::stats::Latency;
use crate::bench::tally::Tally;
use anyhow::{bail, ensure};
use phalanx_crypto::Keypair;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

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
    /// Transactions sent (at least once).
    pub submitted: u64,
    /// Transactions a node admitted (final or lost).
    pub accepted: u64,
    /// Transactions refused for good, by the API's error code.
    pub rejected: BTreeMap<String, u64>,
    /// Every refused send, resends included, by code.
    pub refusals: BTreeMap<String, u64>,
    /// `POST /txs/batch` requests sent, and those that got no answer.
    pub requests: u64,
    pub errors: u64,
    /// Never sent: behind a nonce of their account refused for good.
    pub skipped: u64,
    /// Never sent: held back (48 pending in their account) to the end.
    pub unsent: u64,
    pub finalized: u64,
    /// Admitted and never seen final.
    pub lost: u64,
    /// Transactions sent per second over the submission window.
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

/// Runs `load`.
pub fn load(args: &LoadArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    plan::check_rate(args.tps, args.duration)?;
    let planned = plan::planned(args.tps, args.duration as f64);
    ensure!(
        planned <= MAX_PLANNED,
        "--tps x --duration must plan at most {MAX_PLANNED} transactions"
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

fn codes(map: &BTreeMap<String, u64>) -> String {
    let list: Vec<String> = map.iter().map(|(c, n)| format!("{c} {n}")).collect();
    if list.is_empty() {
        String::new()
    } else {
        format!(" ({})", list.join(", "))
    }
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
    writeln!(
        out,
        "submitted  {} of {} planned ({:.1} tx/s, {} requests)",
        r.submitted, r.planned, r.submit_tps, r.requests
    )?;
    writeln!(out, "accepted   {}", r.accepted)?;
    let rejected: u64 = r.rejected.values().sum();
    writeln!(out, "rejected   {rejected}{}", codes(&r.rejected))?;
    if !r.refusals.is_empty() {
        writeln!(
            out,
            "refusals   {} (resends included)",
            codes(&r.refusals).trim()
        )?;
    }
    if r.errors > 0 || r.skipped > 0 || r.unsent > 0 {
        writeln!(
            out,
            "unsent     {} requests without an answer; {} transactions skipped behind a refused \
             nonce, {} held back (their account had {} pending: more accounts, `up --fresh \
             --accounts N`, allow more)",
            r.errors,
            r.skipped,
            r.unsent,
            crate::bench::book::MAX_PENDING_PER_ACCOUNT
        )?;
    }
    writeln!(
        out,
        "finalized  {} of {} accepted ({} lost)",
        r.finalized, r.accepted, r.lost
    )?;
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
    let count = args.accounts.unwrap_or(net.account_files().len());
    let keys = senders(client, &live, plan::account_keys(net, count)?).await?;
    let cancel = Arc::new(AtomicBool::new(false));
    let workload = plan::sign_with_progress(
        net.chain_id.clone(),
        keys,
        args.tps,
        u32::try_from(planned)?,
        &cancel,
    )
    .await?;
    let phases = Phases {
        warmup_ms: 0,
        window_ms: args.duration * 1_000,
        drain_ms: args.drain * 1_000,
    };
    let outcome = drive::run(drive::Run {
        client: client.clone(),
        nodes: live.clone(),
        observers: live.clone(),
        workload: Arc::new(workload),
        phases,
        followed: Followed {
            last: start_height,
            final_only,
        },
        origin: Instant::now(),
    })
    .await;
    let book = follow::lock(&outcome.book);
    let tally = Tally::count(&book, &outcome.workload, &phases);
    Ok(report(
        args,
        &live,
        planned,
        final_only,
        &tally,
        &outcome,
        &book.refusals,
    ))
}

/// Each sending account's key with the nonce its node has pending (account
/// j asks node j mod n, where it will send).
async fn senders(
    client: &Client,
    live: &[NodeInfo],
    keys: Vec<Keypair>,
) -> anyhow::Result<Vec<(Keypair, u64)>> {
    let mut senders = Vec::with_capacity(keys.len());
    for (j, key) in keys.into_iter().enumerate() {
        let Some(node) = live.get(j % live.len().max(1)) else {
            bail!("no node for account {j}");
        };
        let address = phalanx_chain::Address::from(key.public()).to_string();
        let account = client.account(node, &address).await?;
        senders.push((key, account.pending_nonce));
    }
    Ok(senders)
}

fn report(
    args: &LoadArgs,
    live: &[NodeInfo],
    planned: u64,
    final_only: bool,
    t: &Tally,
    outcome: &drive::Outcome,
    refusals: &BTreeMap<String, u64>,
) -> LoadReport {
    let latency = Latency::of_sorted(&t.latencies_ms);
    let pick = |f: fn(&Latency) -> u32| latency.as_ref().map(|l| u64::from(f(l)));
    let span_ms = match (t.first_sent_ms, t.last_final_ms) {
        (Some(first), Some(last)) => f64::from(last.saturating_sub(first)),
        _ => 0.0,
    };
    LoadReport {
        target_tps: args.tps,
        duration_s: args.duration,
        accounts: outcome.workload.accounts().len(),
        nodes: live.iter().map(|n| n.index).collect(),
        observer: live.first().map_or(0, |n| n.index),
        planned,
        submitted: t.submitted,
        accepted: t.finalized + t.lost,
        rejected: t.rejected.clone(),
        refusals: refusals.clone(),
        requests: outcome.requests,
        errors: outcome.request_errors,
        skipped: t.skipped,
        unsent: t.unsent,
        finalized: t.finalized,
        lost: t.lost,
        submit_tps: t.submitted as f64 / args.duration.max(1) as f64,
        achieved_tps: t.finalized as f64 / (span_ms / 1_000.0).max(f64::EPSILON),
        latency_ms_p50: pick(|l| l.p50_ms),
        latency_ms_p95: pick(|l| l.p95_ms),
        latency_ms_p99: pick(|l| l.p99_ms),
        latency_ms_max: pick(|l| l.max_ms),
        final_only,
        last_error: outcome.last_error.clone(),
    }
}
