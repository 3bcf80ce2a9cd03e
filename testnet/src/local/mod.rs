//! Local networks of real `phalanx-node` processes: `phalanx-testnet up`,
//! `status`, `down`, `kill`, `restart`, `pause`, `resume`, `partition`,
//! `heal`, `logs`, `load`, `check` and (proof of work) `mine`.
//!
//! # Design
//!
//! **The directory is the network.** `up` (or `init`) writes
//! `DIR/node<i>/` home directories (config, genesis, key; the node adds
//! its data and `node.log`) and `DIR/accounts/<j>.json` funded keys
//! (`0.json` is the faucet), through [`phalanx_node::home`]. Every
//! command reads the network back from there ([`net::Network`]): ports,
//! keys and Byzantine roles come from the nodes' own config files, so
//! editing a config.toml by hand is seen by every command. Node i listens
//! for peers on `BASE + 2i` and serves HTTP on `BASE + 2i + 1`, on
//! 127.0.0.1. `init --hosts` makes the directories for other machines
//! instead: node i's genesis address names host i (`/ip4`, `/ip6` or
//! `/dns`), it binds every interface (the k-th node of a host on
//! `BASE + 2k`), and its admin API is off; the commands reach its API at
//! the host of its genesis address. `up` refuses such a network unless
//! every host is this machine ([`up::check_hosts`]).
//!
//! **Proof of work** (`--consensus pow`, [`pow`]): the nodes are miners.
//! Genesis lists no validators; each node's config says where it listens
//! and names every other node in `p2p.peers`, and its `[mining]` limit is
//! its share of the network's hash rate, from which the genesis target is
//! set. `mine` lifts one node's limit for N blocks ([`mine`]); `check`
//! compares final blocks only and draws the tips ([`forks`]); `partition`
//! and `heal` work on the peer lists instead of the admin API
//! ([`peers`]).
//!
//! **Processes are tracked in a state file** (`DIR/testnet.json`,
//! [`state`]) that exists while the network is up: the node binary, each
//! node's pid, and the foreground supervisor's pid. `up --detach` returns
//! once the network is healthy and leaves the nodes running; without it,
//! `up` stays in the foreground as their supervisor (a live status line,
//! dead nodes reported with the tail of their log, Ctrl-C stops them all).
//! Nodes run in process groups of their own, so a Ctrl-C reaches only the
//! supervisor, which stops them in order: SIGTERM, up to
//! [`process::STOP_GRACE`], then SIGKILL. Before any signal, a pid is
//! checked to still be that node ([`process::probe`]).
//!
//! **Faults.** `kill` is SIGKILL, `pause`/`resume` are SIGSTOP/SIGCONT,
//! `restart` is a clean stop and a start. Partitions go through the nodes'
//! admin API (`POST /admin/partition`, `POST /admin/heal`), which a node
//! serves only with `[testnet] admin_api = true` in its config (`init`
//! and `up` write it): each node blocks the validators outside its group
//! at its network layer. A partition lives in the nodes' memory: a node
//! restarted during one comes back healed.
//!
//! **Measuring.** `load` signs transfers from the funded accounts and
//! submits them at a steady rate across nodes, following the chain through
//! one node's `GET /events` stream to time each transaction from submission
//! to its committed block; it runs on the engine of `bench`
//! ([`crate::bench`]), which also makes and stops a network of its own. `check` compares every node's block hash (and
//! so state root) at every height up to the lowest head (with proof of
//! work: every final block).
//!
//! Every wait has a deadline, every queue and table a bound (in-flight
//! requests, pending transactions per account, samples kept, lines read
//! from a log).

pub mod check;
pub mod client;
pub mod control;
pub mod forks;
pub mod init;
pub mod load;
pub mod mine;
pub mod net;
pub mod peers;
pub mod pow;
pub mod process;
pub mod state;
pub mod supervise;
pub mod up;

use std::path::PathBuf;

/// `--dir`, as every command but `up` and `init` takes it.
#[derive(Debug, Clone, clap::Args)]
pub struct DirArg {
    /// The network's directory.
    #[arg(long, default_value = net::DEFAULT_DIR)]
    pub dir: PathBuf,
}

/// Writes `header` and `rows` as columns as wide as their widest cell
/// (two spaces apart; the last column unpadded).
pub fn write_table(
    out: &mut dyn std::io::Write,
    header: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let width = widths.get(i).copied().unwrap_or(0);
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// The async runtime the commands run their HTTP requests on.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
}

/// SIGINT (Ctrl-C) and SIGTERM, caught so that the nodes can be stopped
/// before this process exits.
#[derive(Debug)]
pub struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    /// Must be called inside the runtime.
    pub fn catch() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves at the next SIGINT or SIGTERM.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_fit_their_widest_cells() {
        let mut out = Vec::new();
        super::write_table(
            &mut out,
            &["node", "rpc", "pid"],
            &[
                vec![
                    "0".into(),
                    "http://node-with-a-long-name:26651".into(),
                    "12".into(),
                ],
                vec!["1".into(), "http://b:26651".into(), "-".into()],
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "node  rpc                                 pid\n\
             0     http://node-with-a-long-name:26651  12\n\
             1     http://b:26651                      -\n"
        );
    }
}
