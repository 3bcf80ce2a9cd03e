//! Partitions of a proof-of-work network, by peer lists.
//!
//! A BFT network is partitioned through the nodes' admin API, which
//! blocks genesis validators outside a node's group. A proof-of-work
//! genesis lists no validators, so the admin API has no one it may block
//! there (it answers `bad_partition`). Its nodes find each other only
//! through their config's `p2p.peers` (no discovery), so a partition is
//! made there instead: each node's `p2p.peers` is cut down to its own
//! group, and the running nodes are stopped (every connection with them
//! ends) and started again, dialing only their group. `heal` gives every
//! node all the others again and restarts them the same way.
//!
//! Unlike the admin API's, such a partition lives in the config files: it
//! outlasts a restart (and `down` and `up`), and `status` shows it (read
//! back from the peer lists: the groups are the sets of nodes that list
//! one another). A restart also empties the nodes' mempools and forgets
//! the side branches they knew; their chains are on disk and stay.

use super::client::Client;
use super::control::live_pid;
use super::net::{Network, NodeInfo};
use super::process::{self, NodeProc, Probe};
use super::state::State;
use super::up::death_report;
use anyhow::{Context, anyhow, bail};
use phalanx_node::config::{CONFIG_FILE, Config};
use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, Instant};

/// How long a restarted node has to answer again.
const ANSWER_WAIT: Duration = Duration::from_secs(60);

/// The `p2p.peers` entry that dials `node`.
fn peer_entry(node: &NodeInfo) -> String {
    format!("{}@{}", node.key, node.p2p)
}

/// Node i's peers when `groups` (indices, every node in one) partition
/// the network.
fn peers_for(net: &Network, groups: &[BTreeSet<usize>], i: usize) -> Vec<String> {
    let group = groups.iter().find(|g| g.contains(&i));
    net.nodes
        .iter()
        .filter(|n| n.index != i && group.is_some_and(|g| g.contains(&n.index)))
        .map(peer_entry)
        .collect()
}

/// The groups `parse`d from the command line (indices), with the nodes
/// named in none as one more group.
pub fn complete_groups(net: &Network, named: Vec<BTreeSet<usize>>) -> Vec<BTreeSet<usize>> {
    let mut groups: Vec<BTreeSet<usize>> = named.into_iter().filter(|g| !g.is_empty()).collect();
    let rest: BTreeSet<usize> = net
        .nodes
        .iter()
        .map(|n| n.index)
        .filter(|i| !groups.iter().any(|g| g.contains(i)))
        .collect();
    if !rest.is_empty() {
        groups.push(rest);
    }
    groups
}

/// The groups the nodes' peer lists keep apart: the sets of nodes that
/// reach one another through `p2p.peers` (either side's list links two
/// nodes, as either may dial). `None` if they all reach one another.
pub fn partition_of(net: &Network) -> Option<Vec<Vec<usize>>> {
    net.pow.as_ref()?;
    let keys: Vec<_> = net.nodes.iter().map(|n| n.key).collect();
    let n = net.nodes.len();
    // Union-find over the links.
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while let Some(&p) = parent.get(i) {
            if p == i {
                break;
            }
            i = p;
        }
        i
    }
    for node in &net.nodes {
        let config = Config::load(&node.home).ok()?;
        for peer in &config.p2p.peers {
            let Ok((key, _)) = phalanx_node::config::parse_peer(peer) else {
                continue;
            };
            if let Some(j) = keys.iter().position(|k| *k == key) {
                let (a, b) = (root(&mut parent, node.index), root(&mut parent, j));
                if let Some(slot) = parent.get_mut(a) {
                    *slot = b;
                }
            }
        }
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut roots: Vec<usize> = Vec::new();
    for i in 0..n {
        let r = root(&mut parent, i);
        match roots.iter().position(|x| *x == r) {
            Some(g) => {
                if let Some(group) = groups.get_mut(g) {
                    group.push(i);
                }
            }
            None => {
                roots.push(r);
                groups.push(vec![i]);
            }
        }
    }
    (groups.len() > 1).then_some(groups)
}

/// Writes every node's peer list for `groups` (one group of all: healed)
/// and restarts the running nodes so that they dial only those.
pub fn apply(net: &Network, groups: &[BTreeSet<usize>], out: &mut dyn Write) -> anyhow::Result<()> {
    for node in &net.nodes {
        let mut config = Config::load(&node.home)?;
        config.p2p.peers = peers_for(net, groups, node.index);
        let path = node.home.join(CONFIG_FILE);
        std::fs::write(&path, toml::to_string(&config)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    for node in &net.nodes {
        let peers: Vec<String> = groups
            .iter()
            .find(|g| g.contains(&node.index))
            .map(|g| {
                g.iter()
                    .filter(|i| **i != node.index)
                    .map(ToString::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let peers = if peers.is_empty() {
            "none".into()
        } else {
            peers.join(", ")
        };
        writeln!(out, "node {}: dials nodes {peers}", node.index)?;
    }
    let Some(mut state) = State::load(&net.dir)? else {
        writeln!(
            out,
            "the network is not running: its nodes dial these from the next `up`"
        )?;
        return Ok(());
    };
    let running: Vec<NodeProc> = net
        .nodes
        .iter()
        .filter_map(|node| {
            let (pid, _) = live_pid(node, Some(&state))?;
            Some(NodeProc {
                index: node.index,
                pid,
                home: node.home.clone(),
                child: None,
            })
        })
        .collect();
    restart_all(net, &mut state, running, out)
}

/// Stops every node of `running` (all at once, so that none redials
/// another with its old peer list), starts them again and waits until
/// each answers.
fn restart_all(
    net: &Network,
    state: &mut State,
    mut running: Vec<NodeProc>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    // Recorded as stopped first: a supervisor does not take the stops for
    // deaths, and if a start fails the state file names no pid that is
    // gone.
    for p in &running {
        state.set_pid(p.index, None);
    }
    state.save(&net.dir)?;
    process::stop_all(&mut running, process::STOP_GRACE);
    let mut started = Vec::with_capacity(running.len());
    for p in &running {
        let node = net.node(p.index)?;
        let child = process::spawn(&state.node_binary, node)?;
        state.set_pid(node.index, Some(child.id()));
        started.push(NodeProc {
            index: node.index,
            pid: child.id(),
            home: node.home.clone(),
            child: Some(child),
        });
    }
    state.save(&net.dir)?;
    let client = Client::new()?;
    super::runtime()?.block_on(wait_answering(&client, net, &mut started))?;
    let list: Vec<String> = started.iter().map(|p| p.index.to_string()).collect();
    writeln!(out, "restarted nodes {}", list.join(", "))?;
    Ok(())
}

/// Waits until every process of `started` answers `GET /status`.
async fn wait_answering(
    client: &Client,
    net: &Network,
    started: &mut [NodeProc],
) -> anyhow::Result<()> {
    let begin = Instant::now();
    loop {
        let mut silent = None;
        for p in started.iter_mut() {
            if p.probe() == Probe::Gone {
                bail!("{}", death_report(p, net));
            }
            let node = net.node(p.index)?;
            if silent.is_none() && client.status(node).await.is_err() {
                silent = Some(p.index);
            }
        }
        let Some(index) = silent else {
            return Ok(());
        };
        if begin.elapsed() > ANSWER_WAIT {
            return Err(anyhow!(
                "node {index} does not answer {} s after its restart; see `phalanx-testnet logs \
                 {index}`",
                ANSWER_WAIT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::init::{NetSpec, create};
    use crate::local::pow::PowArgs;
    use phalanx_chain::ConsensusKind;

    fn pow_net(dir: &std::path::Path, nodes: usize) -> Network {
        create(
            dir,
            &NetSpec {
                validators: nodes,
                consensus: ConsensusKind::Pow,
                base_port: 31000,
                hosts: Vec::new(),
                accounts: 1,
                chain_id: "peers-test".into(),
                quick: false,
                pow: Some(PowArgs::default().resolve(nodes).unwrap()),
            },
        )
        .unwrap();
        Network::open(dir).unwrap()
    }

    #[test]
    fn groups_are_written_to_the_peer_lists_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let net = pow_net(dir.path(), 4);
        assert_eq!(partition_of(&net), None);
        let groups = complete_groups(&net, vec![BTreeSet::from([0, 1])]);
        assert_eq!(groups, vec![BTreeSet::from([0, 1]), BTreeSet::from([2, 3])]);
        let mut out = Vec::new();
        apply(&net, &groups, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("node 0: dials nodes 1"), "{out}");
        assert!(out.contains("node 3: dials nodes 2"), "{out}");
        assert!(out.contains("not running"), "{out}");
        // The nodes are still found where they listen.
        let again = Network::open(dir.path()).unwrap();
        assert_eq!(again.nodes[2].p2p, net.nodes[2].p2p);
        assert_eq!(partition_of(&again), Some(vec![vec![0, 1], vec![2, 3]]));
        let config = Config::load(&net.nodes[0].home).unwrap();
        assert_eq!(config.p2p.peers, vec![peer_entry(&net.nodes[1])]);
        // A node alone dials no one.
        apply(
            &net,
            &[BTreeSet::from([0]), BTreeSet::from([1, 2, 3])],
            &mut Vec::new(),
        )
        .unwrap();
        assert!(
            Config::load(&net.nodes[0].home)
                .unwrap()
                .p2p
                .peers
                .is_empty()
        );
        assert_eq!(partition_of(&again), Some(vec![vec![0], vec![1, 2, 3]]));
        // Healed: everyone dials everyone.
        apply(&net, &[BTreeSet::from([0, 1, 2, 3])], &mut Vec::new()).unwrap();
        assert_eq!(partition_of(&again), None);
        assert_eq!(Config::load(&net.nodes[3].home).unwrap().p2p.peers.len(), 3);
    }
}
