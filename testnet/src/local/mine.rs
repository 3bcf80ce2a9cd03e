//! `phalanx-testnet mine N [--node I]`: Bitcoin regtest's `generate` for a
//! local proof-of-work network.
//!
//! It asks node I (`POST /mine {"blocks": N}`) to mine N more blocks
//! without its hash-rate limit, then follows the node's chain until N
//! blocks above where it started pay the node's mining address (blocks
//! it mined that a reorganization took off its chain do not count), or,
//! once the node has mined what it was asked for (`mining.on_demand` is
//! 0: some of its blocks lost a race), until the chain grew by N; and
//! prints the new height. A node that predates `POST /mine` (404) is not
//! asked: it mines at its configured rate among the others, and the
//! command waits for the chain to grow by N blocks, whoever mines them.
//!
//! The blocks above the start are read once each: a poll walks down from
//! the head and stops at the first block it has seen already (a block's
//! hash covers its parent, so everything below is the same chain).

use super::DirArg;
use super::client::{Client, MineAnswer, Status};
use super::net::{Network, NodeInfo};
use anyhow::{anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

/// How often the node is polled.
const POLL: Duration = Duration::from_millis(250);
/// Most blocks `mine` asks for at once.
pub const MAX_BLOCKS: u64 = 1_000;

/// `phalanx-testnet mine`.
#[derive(Debug, Clone, clap::Args)]
pub struct MineArgs {
    /// How many blocks to mine.
    pub blocks: u64,
    /// The node that mines them.
    #[arg(long, default_value_t = 0)]
    pub node: usize,
    /// Give up after this many seconds [default: a minute plus ten block
    /// intervals per block].
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    #[command(flatten)]
    pub dir: DirArg,
}

/// What to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goal {
    /// `n` blocks on the node's chain that pay `address`.
    MinedBy { n: u64 },
    /// The chain grown by `n` blocks (the node could not be asked).
    Grown { n: u64 },
}

/// The node's chain above the start height: height -> (hash, mined by the
/// node).
#[derive(Debug, Default)]
struct Followed {
    blocks: BTreeMap<u64, (String, bool)>,
}

impl Followed {
    /// Blocks at or below `height` that the node mined.
    fn mined(&self, height: u64) -> u64 {
        self.blocks
            .range(..=height)
            .filter(|(_, (_, m))| *m)
            .count() as u64
    }
}

/// Runs `mine`.
pub fn mine(args: &MineArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if !(1..=MAX_BLOCKS).contains(&args.blocks) {
        bail!("mine: from 1 to {MAX_BLOCKS} blocks");
    }
    let net = Network::open(&args.dir.dir)?;
    let Some(pow) = &net.pow else {
        bail!(
            "the network in {} runs {}, which is not mined: `mine` is for --consensus pow",
            net.dir.display(),
            net.consensus
        );
    };
    let node = net.node(args.node)?;
    let limit = Duration::from_secs(args.timeout.unwrap_or_else(|| {
        60 + args
            .blocks
            .saturating_mul(10)
            .saturating_mul(pow.block_interval_ms)
            / 1_000
    }));
    let client = Client::new()?;
    super::runtime()?.block_on(run(&client, node, args.blocks, limit, out))
}

async fn run(
    client: &Client,
    node: &NodeInfo,
    blocks: u64,
    limit: Duration,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let i = node.index;
    let status = client.status(node).await?;
    let address = status
        .mining
        .as_ref()
        .map(|m| m.address.clone())
        .ok_or_else(|| {
            anyhow!("node {i} does not mine (its config.toml has [mining] enabled = false)")
        })?;
    let start = status.height.unwrap_or(0);
    let goal = match client.mine(node, blocks).await? {
        MineAnswer::Mining(_) => Goal::MinedBy { n: blocks },
        MineAnswer::Unsupported => {
            writeln!(
                out,
                "node {i} has no POST /mine (it predates it): waiting for the chain to grow by \
                 {blocks} blocks at the configured hash rates"
            )?;
            Goal::Grown { n: blocks }
        }
    };
    let bar = ProgressBar::new(blocks);
    bar.set_style(
        ProgressStyle::with_template("{spinner} mining [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    let mut followed = Followed::default();
    let begin = Instant::now();
    let last = loop {
        let status = client.status(node).await;
        if let Ok(status) = &status {
            let height = status.height.unwrap_or(0);
            follow(client, node, &address, start, height, &mut followed).await?;
            let on_demand = status.mining.as_ref().and_then(|m| m.on_demand);
            let (done, mined) = progress(goal, &followed, start, height, on_demand);
            bar.set_position(done.min(blocks));
            bar.set_message(format!("height {height}, {mined} mined by node {i}"));
            if done >= blocks {
                break status.clone();
            }
        }
        if begin.elapsed() > limit {
            bar.finish_and_clear();
            let seen = status.map_or_else(|e| format!("{e:#}"), |s| describe(&s));
            bail!(
                "node {i} did not get {blocks} new blocks within {} s ({seen}); see \
                 `phalanx-testnet status` and `phalanx-testnet logs {i}`",
                limit.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    };
    bar.finish_and_clear();
    let height = last.height.unwrap_or(0);
    let mined = followed.mined(height);
    let tip: String = last
        .head_hash
        .unwrap_or_default()
        .chars()
        .take(12)
        .collect();
    writeln!(
        out,
        "height {height} (was {start}): node {i} mined {mined} of the {} new blocks; tip {tip}",
        height.saturating_sub(start)
    )?;
    Ok(())
}

/// Blocks done towards `goal`, and blocks the node mined. `on_demand`:
/// the blocks the node has still to mine at full speed (`None`: it does
/// not say).
fn progress(
    goal: Goal,
    followed: &Followed,
    start: u64,
    height: u64,
    on_demand: Option<u64>,
) -> (u64, u64) {
    let mined = followed.mined(height);
    let grown = height.saturating_sub(start);
    match goal {
        // Its last block mined, the chain counts.
        Goal::MinedBy { .. } if on_demand == Some(0) => (mined.max(grown), mined),
        Goal::MinedBy { .. } => (mined, mined),
        Goal::Grown { .. } => (grown, mined),
    }
}

fn describe(status: &Status) -> String {
    format!(
        "its height is {}, {} peers",
        status.height.unwrap_or(0),
        status.peers
    )
}

/// Reads the node's blocks from `height` down to the first one already
/// followed (or to `start`), and forgets what lies above `height` (a
/// reorganization onto a shorter chain).
async fn follow(
    client: &Client,
    node: &NodeInfo,
    address: &str,
    start: u64,
    height: u64,
    followed: &mut Followed,
) -> anyhow::Result<()> {
    followed.blocks.retain(|h, _| *h <= height);
    let mut h = height;
    while h > start {
        let Some(block) = client.block(node, h).await? else {
            // The head moved down meanwhile; the next poll sees it.
            return Ok(());
        };
        if followed
            .blocks
            .get(&h)
            .is_some_and(|(hash, _)| *hash == block.hash)
        {
            return Ok(());
        }
        let mine = block.header.proposer == address;
        followed.blocks.insert(h, (block.hash, mine));
        h -= 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_blocks_on_the_chain_count() {
        let mut f = Followed::default();
        for (h, mine) in [(11, true), (12, false), (13, true), (14, true)] {
            f.blocks.insert(h, (format!("b{h}"), mine));
        }
        assert_eq!(f.mined(14), 3);
        assert_eq!(f.mined(12), 1);
        assert_eq!(
            progress(Goal::MinedBy { n: 3 }, &f, 10, 14, Some(1)),
            (3, 3),
            "mined by the node"
        );
        assert_eq!(progress(Goal::Grown { n: 3 }, &f, 10, 14, None), (4, 3));
        // The node has mined what it was asked for, but one of its blocks
        // lost a race: the chain's growth counts.
        f.blocks.insert(13, ("other".into(), false));
        assert_eq!(
            progress(Goal::MinedBy { n: 3 }, &f, 10, 14, Some(1)),
            (2, 2)
        );
        assert_eq!(
            progress(Goal::MinedBy { n: 3 }, &f, 10, 14, Some(0)),
            (4, 2)
        );
    }
}
