//! `phalanx-testnet up`: creates the network if needed, checks its ports,
//! starts the nodes, waits until every node answers and a quorum has a
//! final block (proof of work: every node holds the same new block),
//! prints how to reach it, then either returns (`--detach`) or supervises
//! it in the foreground until Ctrl-C.

use super::client::Client;
use super::init::{self, NetSpec};
use super::net::{self, DEFAULT_DIR, Network};
use super::pow::PowArgs;
use super::process::{self, NodeProc, Probe};
use super::state::State;
use super::{Signals, supervise};
use crate::sim::scenario::ByzantineSpec;
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use phalanx_chain::ConsensusKind;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `phalanx-testnet up`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Validators of a new network, or miners with --consensus pow
    /// [default: 4].
    #[arg(long)]
    pub validators: Option<usize>,
    /// The protocol of a new network: a BFT committee (hotstuff, pbft) or
    /// proof of work (pow: every node mines) [default: hotstuff].
    #[arg(long, value_parser = crate::cli::consensus_kind())]
    pub consensus: Option<ConsensusKind>,
    /// The network's directory (created if it holds no network).
    #[arg(long, default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Ports of a new network: node i listens for peers on BASE + 2i and
    /// serves HTTP on BASE + 2i + 1 [default: 26650].
    #[arg(long)]
    pub base_port: Option<u16>,
    /// INDEX[,INDEX...]:BEHAVIOUR: sets consensus.byzantine in those
    /// nodes' config.toml (repeatable; kept for later runs). Both
    /// protocols have silent, equivocate, double-vote and
    /// invalid-signature; hotstuff also stale-qc; pbft also skip-height,
    /// reorder and withhold.
    #[arg(long, value_name = "SPEC")]
    pub byzantine: Vec<ByzantineSpec>,
    /// Return once the network is healthy and leave it running.
    #[arg(long)]
    pub detach: bool,
    /// Remove DIR first (a new network: new keys, empty chain).
    #[arg(long)]
    pub fresh: bool,
    /// Funded accounts of a new network (accounts/0.json is the faucet).
    #[arg(long, default_value_t = 8)]
    pub accounts: usize,
    /// The chain id of a new network.
    #[arg(long, default_value = "phalanx-local")]
    pub chain_id: String,
    /// Give up if the network is not healthy within this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    #[command(flatten)]
    pub pow: PowArgs,
    /// Short timeouts and batch delay in a new network's configs (tests).
    #[arg(long, hide = true)]
    pub quick: bool,
}

/// Runs `up`.
pub fn up(args: &UpArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let dir = net::absolute(&args.dir)?;
    refuse_if_running(&dir)?;
    if args.fresh {
        wipe(&dir)?;
    }
    prepare(&dir, args, out)?;
    let net = Network::open(&dir)?;
    check_hosts(&net)?;
    check_ports(&net)?;
    let binary = process::node_binary()?;
    let rt = super::runtime()?;
    let client = Client::new()?;
    let mut signals = rt.block_on(async { Signals::catch() })?;
    let supervisor = (!args.detach).then(std::process::id);
    let (mut procs, state) = start_all(&net, &binary, supervisor)?;
    let deadline = Duration::from_secs(args.timeout);
    let healthy = rt.block_on(async {
        tokio::select! {
            r = wait_healthy(&client, &net, &mut procs, deadline) => r,
            () = signals.recv() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    if let Err(e) = healthy {
        stop(&net, &mut procs, out)?;
        return Err(e);
    }
    print_table(&net, &procs, out)?;
    if args.detach {
        writeln!(
            out,
            "running in the background; `phalanx-testnet status --dir {0}` shows it, \
             `phalanx-testnet down --dir {0}` stops it",
            args.dir.display()
        )?;
        return Ok(());
    }
    writeln!(out, "Ctrl-C stops the network")?;
    out.flush()?;
    rt.block_on(supervise::supervise(
        &client,
        &net,
        &mut procs,
        state,
        &mut signals,
        out,
    ))?;
    stop(&net, &mut procs, out)
}

/// Refuses to start a network that is running already.
fn refuse_if_running(dir: &Path) -> anyhow::Result<()> {
    if !net::exists(dir) {
        return Ok(());
    }
    let net = Network::open(dir)?;
    let running = running_nodes(&net, State::load(dir)?.as_ref());
    if !running.is_empty() {
        let list: Vec<String> = running
            .iter()
            .map(|(i, pid)| format!("node {i} pid {pid}"))
            .collect();
        bail!(
            "the network in {} is running ({}): `phalanx-testnet down --dir {}` first",
            dir.display(),
            list.join(", "),
            dir.display()
        );
    }
    // Nothing runs: a state file left behind (a supervisor that was
    // SIGKILLed) is stale.
    State::remove(dir)
}

/// Nodes of `net` with a live process, from the state file and from the
/// processes themselves.
pub fn running_nodes(net: &Network, state: Option<&State>) -> Vec<(usize, u32)> {
    let mut running = Vec::new();
    for node in &net.nodes {
        let recorded = state
            .and_then(|s| s.pid(node.index))
            .filter(|pid| process::probe(*pid, &node.home) != Probe::Gone);
        let pids: Vec<u32> = match recorded {
            Some(pid) => vec![pid],
            None => process::find_nodes_of(&node.home),
        };
        running.extend(pids.into_iter().map(|pid| (node.index, pid)));
    }
    running
}

/// Removes `dir` if it is a network directory (or empty).
pub fn wipe(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let empty = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .next()
        .is_none();
    if !(net::exists(dir) || State::path(dir).exists() || empty) {
        bail!(
            "not removing {}: it holds no network (no node0/)",
            dir.display()
        );
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
}

/// Creates the network if `dir` holds none, else checks that the flags
/// agree with it; then applies `--byzantine`.
fn prepare(dir: &Path, args: &UpArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if net::exists(dir) {
        check_flags_agree(&Network::open(dir)?, args)?;
    } else {
        let validators = args.validators.unwrap_or(4);
        let consensus = args.consensus.unwrap_or(ConsensusKind::Hotstuff);
        init::check_byzantine(consensus, validators, &args.byzantine)?;
        init::create(
            dir,
            &NetSpec {
                validators,
                consensus,
                base_port: args.base_port.unwrap_or(net::DEFAULT_BASE_PORT),
                hosts: Vec::new(),
                accounts: args.accounts,
                chain_id: args.chain_id.clone(),
                quick: args.quick,
                pow: init::pow_plan(consensus, validators, &args.pow)?,
            },
        )?;
        let created = Network::open(dir)?;
        writeln!(
            out,
            "created a {validators}-{} {consensus} network in {}",
            created.member_noun(),
            dir.display()
        )?;
        init::print_pow(&created, out)?;
    }
    let net = Network::open(dir)?;
    init::apply_byzantine(dir, net.consensus, net.nodes.len(), &args.byzantine)
}

/// Refuses flags that describe another network than the one in `net.dir`.
fn check_flags_agree(net: &Network, args: &UpArgs) -> anyhow::Result<()> {
    let dir = net.dir.display();
    if let Some(wanted) = args.validators
        && wanted != net.nodes.len()
    {
        bail!(
            "{dir} holds a {}-{} network; add --fresh to replace it with {wanted}",
            net.nodes.len(),
            net.member_noun()
        );
    }
    if let Some(wanted) = args.consensus
        && wanted != net.consensus
    {
        bail!(
            "{dir} holds a {} network; add --fresh to replace it with a {wanted} one",
            net.consensus
        );
    }
    let base = net
        .nodes
        .first()
        .and_then(|n| net::tcp_of_multiaddr(&n.p2p))
        .map(|(_, port)| port);
    if let Some(wanted) = args.base_port
        && base != Some(wanted)
    {
        bail!(
            "{dir} holds a network on other ports (node 0's peer port is {}); add --fresh to \
             replace it",
            base.map_or_else(|| "not a TCP port".into(), |p| p.to_string())
        );
    }
    check_pow_flags_agree(net, &args.pow)
}

/// Refuses proof-of-work flags that describe another network than `net`.
fn check_pow_flags_agree(net: &Network, args: &PowArgs) -> anyhow::Result<()> {
    if !args.any() {
        return Ok(());
    }
    let dir = net.dir.display();
    let Some(pow) = &net.pow else {
        bail!(
            "{dir} holds a {} network: the proof-of-work flags do not apply to it",
            net.consensus
        );
    };
    let plan = args.resolve(net.nodes.len())?;
    let limits: Vec<Option<u64>> = net.nodes.iter().map(|n| n.hashrate_limit).collect();
    let differs = [
        (
            args.block_interval.is_some() && plan.block_interval_ms != pow.block_interval_ms,
            "--block-interval",
        ),
        (
            args.confirmations.is_some() && plan.confirmations != pow.confirmations,
            "--confirmations",
        ),
        (
            (!args.hashrate.is_empty() || args.total_hashrate.is_some())
                && plan.hashrate_limits() != limits,
            "--hashrate/--total-hashrate",
        ),
    ];
    if let Some((_, flag)) = differs.iter().find(|(d, _)| *d) {
        bail!(
            "{dir} holds a proof-of-work network made with other settings than {flag} asks for; \
             add --fresh to replace it"
        );
    }
    Ok(())
}

/// Refuses to start a network made for other machines (`init --hosts`),
/// naming the first node whose host is not this one.
pub fn check_hosts(net: &Network) -> anyhow::Result<()> {
    for node in &net.nodes {
        let Some(host) = net::host_of_multiaddr(&node.p2p) else {
            continue;
        };
        if !host.is_this_machine() {
            bail!(
                "node {i} runs on {host}, not on this machine: `up` starts every node here. \
                 Copy node{i}/ to {host} and start it there with `phalanx-node --home node{i}`; \
                 `status`, `check` and `load` work from here once the nodes run",
                i = node.index
            );
        }
    }
    Ok(())
}

/// Refuses to start if a port a node needs is taken, naming it.
pub fn check_ports(net: &Network) -> anyhow::Result<()> {
    for node in &net.nodes {
        for (ip, port, what) in node.ports() {
            if let Err(e) = std::net::TcpListener::bind((ip, port)) {
                bail!(
                    "port {port} on {ip} ({what} of node {}) is not free: {e}; stop what uses \
                     it, or make a network on other ports with `up --fresh --base-port P`",
                    node.index
                );
            }
        }
    }
    Ok(())
}

/// Starts every node and writes the state file. If one cannot be
/// started, stops those that were.
pub fn start_all(
    net: &Network,
    binary: &Path,
    supervisor: Option<u32>,
) -> anyhow::Result<(Vec<NodeProc>, State)> {
    let mut state = State::new(binary.to_owned(), supervisor, net.nodes.len());
    let mut procs = Vec::with_capacity(net.nodes.len());
    for node in &net.nodes {
        match process::spawn(binary, node) {
            Ok(child) => {
                state.set_pid(node.index, Some(child.id()));
                procs.push(NodeProc {
                    index: node.index,
                    pid: child.id(),
                    home: node.home.clone(),
                    child: Some(child),
                });
            }
            Err(e) => {
                process::stop_all(&mut procs, process::STOP_GRACE);
                return Err(e);
            }
        }
    }
    if let Err(e) = state.save(&net.dir) {
        process::stop_all(&mut procs, process::STOP_GRACE);
        return Err(e);
    }
    Ok((procs, state))
}

/// Stops `procs`, removes the state file and says so.
fn stop(net: &Network, procs: &mut [NodeProc], out: &mut dyn Write) -> anyhow::Result<()> {
    let killed = process::stop_all(procs, process::STOP_GRACE);
    State::remove(&net.dir)?;
    if killed.is_empty() {
        writeln!(out, "stopped {} nodes", procs.len())?;
    } else {
        writeln!(
            out,
            "stopped {} nodes ({:?} did not stop within {} s of SIGTERM and were killed)",
            procs.len(),
            killed,
            process::STOP_GRACE.as_secs()
        )?;
    }
    Ok(())
}

/// How a node that died is reported: how it ended and its log's tail.
pub fn death_report(p: &mut NodeProc, net: &Network) -> String {
    let how = p
        .exit_status()
        .unwrap_or_else(|| "is no longer running".into());
    let log = net.nodes.get(p.index).map(|n| n.log()).unwrap_or_default();
    format!(
        "node {} (pid {}) {how}; the last lines of {}:\n{}",
        p.index,
        p.pid,
        log.display(),
        process::tail(&log, 20)
    )
}

/// Waits until every node answers `GET /status` and a quorum has made a
/// block final above the height the network started at (block 1 for a new
/// network: a restarted chain must show that it moves again), showing
/// progress; fails at once if a node dies. With proof of work a block is
/// final only `confirmations` blocks later, so the wait is for every node
/// to be connected to all its peers and to hold the same new block
/// ([`pow_settled`]).
pub async fn wait_healthy(
    client: &Client,
    net: &Network,
    procs: &mut [NodeProc],
    limit: Duration,
) -> anyhow::Result<()> {
    let n = net.nodes.len();
    let pow = !net.consensus.is_bft();
    let quorum = if pow { n } else { net.quorum() };
    let bar = ProgressBar::new(n as u64 + 1);
    bar.set_style(
        ProgressStyle::with_template("{spinner} starting [{bar:24}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    let start = Instant::now();
    // The highest final height when the nodes first answered.
    let mut start_height: Option<u64> = None;
    loop {
        for p in procs.iter_mut() {
            if p.probe() == Probe::Gone {
                bar.finish_and_clear();
                bail!("{}", death_report(p, net));
            }
        }
        let statuses =
            futures::future::join_all(net.nodes.iter().map(|node| client.status(node))).await;
        let answering = statuses.iter().filter(|s| s.is_ok()).count();
        let heights: Vec<u64> = statuses
            .iter()
            .flatten()
            .map(|s| {
                if pow {
                    s.height.unwrap_or(0)
                } else {
                    s.finalized_height.unwrap_or(0)
                }
            })
            .collect();
        if answering == n && start_height.is_none() {
            start_height = heights.iter().max().copied();
        }
        let from = start_height.unwrap_or(0);
        let finals = match start_height {
            Some(from) if pow => pow_settled(client, net, &statuses, from + 1).await,
            Some(from) => heights.iter().filter(|h| **h > from).count(),
            None => 0,
        };
        bar.set_position((answering + usize::from(finals >= quorum)) as u64);
        bar.set_message(if answering < n {
            format!("{answering}/{n} nodes answer")
        } else if pow {
            format!(
                "waiting for block {} to be mined and reach every node, connected ({finals}/{n})",
                from + 1
            )
        } else {
            format!(
                "waiting for block {} to be final ({finals}/{quorum} nodes)",
                from + 1
            )
        });
        if answering == n && finals >= quorum {
            bar.finish_and_clear();
            return Ok(());
        }
        if start.elapsed() > limit {
            bar.finish_and_clear();
            let silent = statuses.iter().position(|s| s.is_err());
            let hint = match silent.and_then(|i| net.nodes.get(i)) {
                Some(node) => format!(
                    "; node {} does not answer, the last lines of {}:\n{}",
                    node.index,
                    node.log().display(),
                    process::tail(&node.log(), 20)
                ),
                None => format!(
                    "; every node answers but the chain does not move past height {from}: see \
                     `phalanx-testnet status` and `phalanx-testnet logs I`"
                ),
            };
            let what = if pow {
                format!(
                    "the same block {} and all their peers (all {n} should; see `phalanx-testnet \
                     check` for the tips)",
                    from + 1
                )
            } else {
                format!("a final block above height {from} (a quorum is {quorum})")
            };
            bail!(
                "the network was not healthy within {} s: {answering}/{n} nodes answer, {finals} \
                 have {what}{hint}",
                limit.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Proof of work: how many nodes are connected to every peer their config
/// names and hold the block at `height` that most nodes of their group
/// hold (one group, or those of a partition, [`super::peers`]). A miner
/// that started before its peers found blocks of its own; until the nodes
/// share the new block, they are not one network yet.
async fn pow_settled(
    client: &Client,
    net: &Network,
    statuses: &[anyhow::Result<super::client::Status>],
    height: u64,
) -> usize {
    let mut hashes: Vec<Option<String>> = Vec::with_capacity(net.nodes.len());
    for (node, status) in net.nodes.iter().zip(statuses) {
        let connected = status
            .as_ref()
            .is_ok_and(|s| s.height.unwrap_or(0) >= height && s.peers >= node.dials);
        let block = match connected {
            true => client.block(node, height).await.ok().flatten(),
            false => None,
        };
        hashes.push(block.map(|b| b.hash));
    }
    let groups = super::peers::partition_of(net)
        .unwrap_or_else(|| vec![net.nodes.iter().map(|n| n.index).collect()]);
    groups
        .iter()
        .map(|group| {
            let held: Vec<&String> = group
                .iter()
                .filter_map(|i| hashes.get(*i).and_then(Option::as_ref))
                .collect();
            held.iter()
                .map(|h| held.iter().filter(|x| *x == h).count())
                .max()
                .unwrap_or(0)
        })
        .sum()
}

/// The table of nodes, the faucet and a wallet command to paste.
fn print_table(net: &Network, procs: &[NodeProc], out: &mut dyn Write) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = net
        .nodes
        .iter()
        .map(|node| {
            let pid = procs
                .iter()
                .find(|p| p.index == node.index)
                .map_or_else(|| "-".into(), |p| p.pid.to_string());
            vec![
                node.index.to_string(),
                node.role(),
                node.rpc(),
                node.p2p.clone(),
                pid,
            ]
        })
        .collect();
    super::write_table(out, &["node", "role", "rpc", "p2p", "pid"], &rows)?;
    let faucet = net.faucet();
    writeln!(
        out,
        "faucet key: {} (address {})",
        faucet.display(),
        net::address_of(&faucet)?
    )?;
    init::print_wallet_commands(net, out)?;
    writeln!(
        out,
        "node logs: {}/node<i>/node.log (`phalanx-testnet logs I`)",
        net.dir.display()
    )?;
    Ok(())
}
