//! Steering a running network: `status`, `down`, `kill`, `restart`,
//! `pause`, `resume`, `partition`, `heal` and `logs`.

use super::DirArg;
use super::client::{Client, Status, Tip};
use super::net::{self, Network, NodeInfo};
use super::process::{self, NodeProc, Probe};
use super::state::State;
use super::up::{death_report, running_nodes, wipe};
use anyhow::{Context, anyhow, bail};
use nix::sys::signal::Signal;
use phalanx_crypto::PublicKey;
use serde::Serialize;
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

/// How long `restart` waits for the node to answer again.
const RESTART_WAIT: Duration = Duration::from_secs(60);
/// Most bytes `logs --follow` prints per poll.
const FOLLOW_CHUNK: u64 = 64 * 1024;

/// `phalanx-testnet status`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `phalanx-testnet down`.
#[derive(Debug, Clone, clap::Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// Remove the network's directory too (keys, chain, logs).
    #[arg(long)]
    pub clean: bool,
}

/// The commands that act on one node.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// The node's index.
    pub node: usize,
    #[command(flatten)]
    pub dir: DirArg,
}

/// `phalanx-testnet partition`.
#[derive(Debug, Clone, clap::Args)]
pub struct PartitionArgs {
    /// Groups of nodes that keep talking, e.g. `0,1 2,3`: indices or public
    /// keys, comma-separated. Nodes named in no group form one more group.
    #[arg(required = true, value_name = "GROUP")]
    pub groups: Vec<String>,
    #[command(flatten)]
    pub dir: DirArg,
}

/// `phalanx-testnet logs`.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// The node's index.
    pub node: usize,
    /// Keep printing what the node writes (until Ctrl-C).
    #[arg(long, short)]
    pub follow: bool,
    /// How many of the last lines to print first.
    #[arg(long, default_value_t = 100)]
    pub lines: usize,
    #[command(flatten)]
    pub dir: DirArg,
}

/// One node in `status`.
#[derive(Debug, Serialize)]
pub struct NodeReport {
    pub index: usize,
    /// `up` (answers), `paused` (SIGSTOP), `not answering` (runs, no
    /// answer) or `down`.
    pub state: &'static str,
    pub pid: Option<u32>,
    pub role: String,
    pub rpc: String,
    pub p2p: String,
    pub key: PublicKey,
    pub height: Option<u64>,
    pub head_hash: Option<String>,
    pub finalized_height: Option<u64>,
    pub view: Option<u64>,
    pub phase: Option<String>,
    pub peers: Option<usize>,
    pub syncing: Option<bool>,
    pub mempool_size: Option<usize>,
    /// Why consensus halted on this node, if it did.
    pub halted: Option<String>,
    /// Proof of work: the head's cumulative work (hex), if the node says.
    pub work: Option<String>,
    /// Proof of work: the chain tips the node knows (empty if it does not
    /// say).
    pub tips: Vec<Tip>,
    /// Proof of work: hashes per second over the node's last status
    /// interval, if it mines.
    pub hash_rate: Option<u64>,
    /// Proof of work: its miner's limit (0: none), if it mines.
    pub hashrate_limit: Option<u64>,
}

/// `status --json`.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub dir: String,
    pub chain_id: String,
    /// The genesis protocol.
    pub consensus: String,
    /// True while the state file says the network is up.
    pub running: bool,
    /// Proof of work: confirmations that make a block final.
    pub confirmations: Option<u64>,
    /// Proof of work: the groups a partition (by `p2p.peers`) keeps
    /// apart, if there is one.
    pub partition: Option<Vec<Vec<usize>>>,
    pub nodes: Vec<NodeReport>,
}

/// The pid running `node`, if any: the state file's, else one found by
/// its home directory.
pub(super) fn live_pid(node: &NodeInfo, state: Option<&State>) -> Option<(u32, Probe)> {
    let recorded = state.and_then(|s| s.pid(node.index));
    let pid = recorded
        .filter(|pid| process::probe(*pid, &node.home) != Probe::Gone)
        .or_else(|| process::find_nodes_of(&node.home).first().copied())?;
    Some((pid, process::probe(pid, &node.home)))
}

/// Gathers `status`.
pub async fn gather_status(net: &Network, client: &Client) -> anyhow::Result<StatusReport> {
    let state = State::load(&net.dir)?;
    let procs: Vec<_> = net
        .nodes
        .iter()
        .map(|n| live_pid(n, state.as_ref()))
        .collect();
    // A paused node is not asked: the kernel accepts the connection and
    // nothing ever answers, so the query would only run into its timeout.
    let statuses: Vec<Option<Status>> =
        futures::future::join_all(net.nodes.iter().zip(&procs).map(|(n, proc)| async move {
            match proc {
                Some((_, Probe::Paused)) => None,
                _ => client.status(n).await.ok(),
            }
        }))
        .await;
    let nodes = net
        .nodes
        .iter()
        .zip(statuses)
        .zip(procs)
        .map(|((node, status), proc)| {
            let state = match (&status, proc) {
                (Some(_), _) => "up",
                (None, Some((_, Probe::Paused))) => "paused",
                (None, Some((_, Probe::Running))) => "not answering",
                (None, _) => "down",
            };
            NodeReport {
                index: node.index,
                state,
                pid: proc.map(|(pid, _)| pid),
                role: node.role(),
                rpc: node.rpc(),
                p2p: node.p2p.clone(),
                key: node.key,
                height: status.as_ref().and_then(|s| s.height),
                head_hash: status.as_ref().and_then(|s| s.head_hash.clone()),
                finalized_height: status.as_ref().and_then(|s| s.finalized_height),
                view: status.as_ref().map(|s| s.view),
                phase: status.as_ref().and_then(|s| s.phase.clone()),
                peers: status.as_ref().map(|s| s.peers),
                syncing: status.as_ref().map(|s| s.syncing),
                mempool_size: status.as_ref().map(|s| s.mempool_size),
                halted: status.as_ref().and_then(|s| s.halted.clone()),
                work: status.as_ref().and_then(|s| s.work.clone()),
                tips: status.as_ref().map(|s| s.tips.clone()).unwrap_or_default(),
                hash_rate: status
                    .as_ref()
                    .and_then(|s| s.mining.as_ref())
                    .map(|m| m.hash_rate),
                hashrate_limit: status
                    .as_ref()
                    .and_then(|s| s.mining.as_ref())
                    .map(|m| m.hashrate_limit),
            }
        })
        .collect();
    Ok(StatusReport {
        dir: net.dir.display().to_string(),
        chain_id: net.chain_id.to_string(),
        consensus: net.consensus.to_string(),
        running: state.is_some(),
        confirmations: net.pow.as_ref().map(|p| p.confirmations),
        partition: super::peers::partition_of(net),
        nodes,
    })
}

fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

/// Runs `status`.
pub fn status(args: &StatusArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let net = Network::open(&args.dir.dir)?;
    let client = Client::new()?;
    let report = super::runtime()?.block_on(gather_status(&net, &client))?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{} network {} in {}",
        report.consensus, report.chain_id, report.dir
    )?;
    if net.pow.is_some() {
        print_pow_status(&report, out)?;
    } else {
        print_bft_status(&report, out)?;
    }
    for n in &report.nodes {
        if let Some(why) = &n.halted {
            writeln!(out, "node {} HALTED: {why}", n.index)?;
        }
    }
    Ok(())
}

/// The first 12 hex digits of a hash.
fn short_hash(hash: &str) -> String {
    hash.chars().take(12).collect()
}

fn print_bft_status(report: &StatusReport, out: &mut dyn Write) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = report
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.index.to_string(),
                n.state.to_owned(),
                opt(n.pid),
                opt(n.height),
                opt(n.head_hash.as_deref().map(short_hash)),
                opt(n.view),
                opt(n.phase.clone()),
                opt(n.peers),
                n.rpc.clone(),
            ]
        })
        .collect();
    super::write_table(
        out,
        &[
            "node", "state", "pid", "height", "head", "view", "phase", "peers", "rpc",
        ],
        &rows,
    )?;
    Ok(())
}

/// Proof of work: per node its tip (height, hash, work), the highest
/// final block, the tips it knows, its hash rate, peers; then the
/// partition, if there is one.
fn print_pow_status(report: &StatusReport, out: &mut dyn Write) -> anyhow::Result<()> {
    use super::pow::{short_number, work_value};
    let rows: Vec<Vec<String>> = report
        .nodes
        .iter()
        .map(|n| {
            let mining = match (n.hash_rate, n.hashrate_limit) {
                (Some(rate), Some(0)) => format!("{} H/s", short_number(rate as f64)),
                (Some(rate), Some(limit)) => format!(
                    "{}/{} H/s",
                    short_number(rate as f64),
                    short_number(limit as f64)
                ),
                _ if n.state == "up" => "not mining".into(),
                _ => "-".into(),
            };
            let tips = if n.tips.is_empty() {
                "-".into()
            } else {
                n.tips.len().to_string()
            };
            vec![
                n.index.to_string(),
                n.state.to_owned(),
                opt(n.pid),
                opt(n.height),
                opt(n.head_hash.as_deref().map(short_hash)),
                opt(n.finalized_height),
                opt(n.work.as_deref().and_then(work_value).map(short_number)),
                tips,
                mining,
                opt(n.peers),
                n.rpc.clone(),
            ]
        })
        .collect();
    super::write_table(
        out,
        &[
            "node", "state", "pid", "height", "tip", "final", "work", "tips", "mining", "peers",
            "rpc",
        ],
        &rows,
    )?;
    if let Some(k) = report.confirmations {
        writeln!(
            out,
            "a block is final with {k} confirmations; `phalanx-testnet check` compares final \
             blocks and shows the tips"
        )?;
    }
    if let Some(groups) = &report.partition {
        let groups: Vec<String> = groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        writeln!(
            out,
            "partitioned: {} (each node dials only its group; `phalanx-testnet heal` undoes it)",
            groups.join(" / ")
        )?;
    }
    Ok(())
}

/// Runs `down`.
pub fn down(args: &DownArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let dir = net::absolute(&args.dir.dir)?;
    if !net::exists(&dir) {
        if args.clean && dir.exists() {
            wipe(&dir)?;
            writeln!(out, "removed {}", dir.display())?;
        } else {
            writeln!(out, "no network in {}: nothing to stop", dir.display())?;
        }
        return Ok(());
    }
    let net = Network::open(&dir)?;
    let state = State::load(&dir)?;
    let running = running_nodes(&net, state.as_ref()).len();
    // A foreground `up` stops its nodes itself when told to.
    if let Some(sup) = state.as_ref().and_then(|s| s.supervisor_pid)
        && sup != std::process::id()
        && process::is_supervisor(sup)
    {
        process::send(sup, Signal::SIGTERM)?;
        let deadline = Instant::now() + process::STOP_GRACE + Duration::from_secs(10);
        while process::is_supervisor(sup) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let mut procs: Vec<NodeProc> = running_nodes(&net, State::load(&dir)?.as_ref())
        .into_iter()
        .filter_map(|(index, pid)| {
            Some(NodeProc {
                index,
                pid,
                home: net.nodes.get(index)?.home.clone(),
                child: None,
            })
        })
        .collect();
    let killed = process::stop_all(&mut procs, process::STOP_GRACE);
    State::remove(&dir)?;
    let mut line = format!("stopped {} node processes", running.max(procs.len()));
    if !killed.is_empty() {
        line.push_str(&format!(" (nodes {killed:?} needed SIGKILL)"));
    }
    writeln!(out, "{line}")?;
    if args.clean {
        wipe(&dir)?;
        writeln!(out, "removed {}", dir.display())?;
    }
    Ok(())
}

/// The network, node `index` and the state file (which must exist).
fn open_node(dir: &DirArg, index: usize) -> anyhow::Result<(Network, State)> {
    let net = Network::open(&dir.dir)?;
    net.node(index)?;
    let state = State::load(&net.dir)?.ok_or_else(|| {
        anyhow!(
            "the network in {} is not running: `phalanx-testnet up --dir {}`",
            net.dir.display(),
            dir.dir.display()
        )
    })?;
    Ok((net, state))
}

/// Runs `kill`: SIGKILL.
pub fn kill(args: &NodeArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let (net, mut state) = open_node(&args.dir, args.node)?;
    let node = net.node(args.node)?;
    let (pid, _) =
        live_pid(node, Some(&state)).ok_or_else(|| anyhow!("node {} is not running", args.node))?;
    process::send(pid, Signal::SIGKILL)?;
    let mut procs = [NodeProc {
        index: node.index,
        pid,
        home: node.home.clone(),
        child: None,
    }];
    if !process::wait_gone(&mut procs, Duration::from_secs(5)) {
        bail!(
            "node {} (pid {pid}) is still there after SIGKILL",
            node.index
        );
    }
    state.set_pid(node.index, None);
    state.save(&net.dir)?;
    writeln!(
        out,
        "killed node {} (pid {pid}); `phalanx-testnet restart {}` starts it again",
        node.index, node.index
    )?;
    Ok(())
}

/// Runs `restart`: a clean stop if it runs, a start, and a wait until it
/// answers.
pub fn restart(args: &NodeArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let (net, mut state) = open_node(&args.dir, args.node)?;
    let node = net.node(args.node)?.clone();
    if let Some((pid, _)) = live_pid(&node, Some(&state)) {
        // Recorded as stopped first: a supervisor does not take the stop
        // for a death.
        state.set_pid(node.index, None);
        state.save(&net.dir)?;
        let mut procs = [NodeProc {
            index: node.index,
            pid,
            home: node.home.clone(),
            child: None,
        }];
        process::stop_all(&mut procs, process::STOP_GRACE);
        writeln!(out, "stopped node {} (pid {pid})", node.index)?;
    }
    for (ip, port, what) in node.ports() {
        std::net::TcpListener::bind((ip, port)).map_err(|e| {
            anyhow!(
                "port {port} on {ip} ({what} of node {}) is not free: {e}",
                node.index
            )
        })?;
    }
    let child = process::spawn(&state.node_binary, &node)?;
    let mut proc = NodeProc {
        index: node.index,
        pid: child.id(),
        home: node.home.clone(),
        child: Some(child),
    };
    state.set_pid(node.index, Some(proc.pid));
    state.save(&net.dir)?;
    let client = Client::new()?;
    super::runtime()?.block_on(async {
        let start = Instant::now();
        loop {
            if proc.probe() == Probe::Gone {
                bail!("{}", death_report(&mut proc, &net));
            }
            if client.status(&node).await.is_ok() {
                return Ok(());
            }
            if start.elapsed() > RESTART_WAIT {
                bail!(
                    "node {} (pid {}) does not answer at {} after {} s; see `phalanx-testnet logs {}`",
                    node.index,
                    proc.pid,
                    node.rpc(),
                    RESTART_WAIT.as_secs(),
                    node.index
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })?;
    writeln!(
        out,
        "restarted node {} (pid {}): {}",
        node.index,
        proc.pid,
        node.rpc()
    )?;
    Ok(())
}

/// Runs `pause` (SIGSTOP) or `resume` (SIGCONT).
pub fn pause_or_resume(args: &NodeArgs, pause: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let (net, state) = open_node(&args.dir, args.node)?;
    let node = net.node(args.node)?;
    let (pid, probe) =
        live_pid(node, Some(&state)).ok_or_else(|| anyhow!("node {} is not running", args.node))?;
    if pause {
        if probe == Probe::Paused {
            bail!("node {} is paused already", node.index);
        }
        process::send(pid, Signal::SIGSTOP)?;
        // The signal is delivered asynchronously: say "paused" only once
        // the kernel shows every thread stopped.
        if !process::wait_probe(pid, &node.home, Probe::Paused, Duration::from_secs(5)) {
            bail!(
                "node {} (pid {pid}) has not stopped after SIGSTOP",
                node.index
            );
        }
        writeln!(
            out,
            "paused node {} (pid {pid}): it answers nothing until `phalanx-testnet resume {}`",
            node.index, node.index
        )?;
    } else {
        if probe != Probe::Paused {
            bail!("node {} is not paused", node.index);
        }
        process::send(pid, Signal::SIGCONT)?;
        if !process::wait_probe(pid, &node.home, Probe::Running, Duration::from_secs(5)) {
            bail!(
                "node {} (pid {pid}) has not resumed after SIGCONT",
                node.index
            );
        }
        writeln!(out, "resumed node {} (pid {pid})", node.index)?;
    }
    Ok(())
}

/// A group's members (indices or keys) as keys of `net`'s nodes.
fn parse_group(net: &Network, text: &str) -> anyhow::Result<Vec<PublicKey>> {
    text.split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|member| {
            if member.bytes().all(|b| b.is_ascii_digit()) {
                let index: usize = member
                    .parse()
                    .map_err(|_| anyhow!("{member:?} is not a node index"))?;
                Ok(net.node(index)?.key)
            } else {
                let key: PublicKey = member
                    .parse()
                    .map_err(|e| anyhow!("{member:?} is neither a node index nor a key: {e}"))?;
                net.nodes
                    .iter()
                    .any(|n| n.key == key)
                    .then_some(key)
                    .ok_or_else(|| anyhow!("{key} is not the key of a node of this network"))
            }
        })
        .collect()
}

/// Runs `partition` (`groups` non-empty) or `heal` (`groups` empty).
/// Groups are separate arguments (`0,1 2,3`) or separated by slashes
/// (`0,1/2,3`, as `sim --partition` writes them).
pub fn partition(dir: &DirArg, groups: &[String], out: &mut dyn Write) -> anyhow::Result<()> {
    let net = Network::open(&dir.dir)?;
    let groups: Vec<String> = groups
        .iter()
        .flat_map(|g| g.split('/'))
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect();
    if net.pow.is_some() {
        return partition_pow(&net, &groups, out);
    }
    let (path, body) = if groups.is_empty() {
        ("/admin/heal", serde_json::json!({}))
    } else {
        let keys = groups
            .iter()
            .map(|g| parse_group(&net, g))
            .collect::<anyhow::Result<Vec<_>>>()?;
        ("/admin/partition", serde_json::json!({ "groups": keys }))
    };
    let client = Client::new()?;
    let answers = super::runtime()?.block_on(futures::future::join_all(
        net.nodes.iter().map(|n| client.post_json(n, path, &body)),
    ));
    let state = State::load(&net.dir)?;
    let index_of = |key: &serde_json::Value| {
        net.nodes
            .iter()
            .find(|n| key.as_str() == Some(n.key.to_string().as_str()))
            .map_or_else(|| "?".into(), |n| n.index.to_string())
    };
    let mut failed = Vec::new();
    for (node, answer) in net.nodes.iter().zip(answers) {
        match answer {
            Ok(value) => {
                let blocked: Vec<String> = value
                    .get("blocked")
                    .and_then(serde_json::Value::as_array)
                    .map(|a| a.iter().map(index_of).collect())
                    .unwrap_or_default();
                let blocked = if blocked.is_empty() {
                    "none".into()
                } else {
                    blocked.join(", ")
                };
                writeln!(out, "node {}: blocks nodes {blocked}", node.index)?;
            }
            Err(e) if live_pid(node, state.as_ref()).is_none() => {
                writeln!(
                    out,
                    "node {}: down, not told (a node starts unpartitioned): {e:#}",
                    node.index
                )?;
            }
            Err(e) => {
                writeln!(out, "node {}: FAILED: {e:#}", node.index)?;
                failed.push(node.index);
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "nodes {failed:?} did not take the change (is `[testnet] admin_api = true` in their \
             config.toml?)"
        );
    }
    Ok(())
}

/// `partition` and `heal` on a proof-of-work network: by the nodes' peer
/// lists ([`super::peers`]).
fn partition_pow(net: &Network, groups: &[String], out: &mut dyn Write) -> anyhow::Result<()> {
    // The nodes are restarted from here: only a network that runs here.
    super::up::check_hosts(net)?;
    let mut named = Vec::with_capacity(groups.len());
    let mut seen = std::collections::BTreeSet::new();
    for group in groups {
        let keys = parse_group(net, group)?;
        let indices: std::collections::BTreeSet<usize> = net
            .nodes
            .iter()
            .filter(|n| keys.contains(&n.key))
            .map(|n| n.index)
            .collect();
        if let Some(twice) = indices.iter().find(|i| !seen.insert(**i)) {
            bail!("node {twice} is in more than one group");
        }
        named.push(indices);
    }
    let groups = super::peers::complete_groups(net, named);
    super::peers::apply(net, &groups, out)
}

/// Runs `logs`.
pub fn logs(args: &LogsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let net = Network::open(&args.dir.dir)?;
    let path = net.node(args.node)?.log();
    if !path.exists() {
        bail!(
            "{} does not exist: node {} has not been started",
            path.display(),
            args.node
        );
    }
    let tail = process::tail(&path, args.lines);
    if !tail.is_empty() {
        writeln!(out, "{tail}")?;
    }
    out.flush()?;
    if !args.follow {
        return Ok(());
    }
    let mut file =
        std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut position = file.seek(SeekFrom::End(0))?;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len < position {
            // Truncated or replaced (a --fresh network): from its start.
            file = std::fs::File::open(&path)?;
            position = 0;
        }
        if len == position {
            continue;
        }
        file.seek(SeekFrom::Start(position))?;
        let mut chunk = Vec::new();
        let read = (&mut file).take(FOLLOW_CHUNK).read_to_end(&mut chunk)?;
        position += read as u64;
        out.write_all(&chunk)?;
        out.flush()?;
    }
}
