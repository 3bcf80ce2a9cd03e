//! A network directory as the commands see it: `node<i>/` home
//! directories (config.toml, genesis.toml, key, data, node.log) and
//! `accounts/<j>.json`, read back from disk so that every command works on
//! a directory made by an earlier one.

use anyhow::{Context, anyhow, bail};
use phalanx_chain::ChainId;
use phalanx_crypto::PublicKey;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// Where `up` and the other commands look when `--dir` is not given.
pub const DEFAULT_DIR: &str = ".phalanx/testnet";
/// Node i listens for peers on `BASE + 2i` and serves HTTP on `BASE + 2i + 1`.
pub const DEFAULT_BASE_PORT: u16 = 26650;
/// Most validators a local network may have.
pub const MAX_VALIDATORS: usize = 100;
/// Most funded accounts a local network may have.
pub const MAX_ACCOUNTS: usize = 10_000;
/// Each node's log file, in its home directory.
pub const LOG_FILE: &str = "node.log";

/// One node of the network.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub index: usize,
    /// Its home directory (absolute).
    pub home: PathBuf,
    /// Its HTTP API.
    pub api: SocketAddr,
    /// Its libp2p listen address (a multiaddr).
    pub p2p: String,
    /// Its node key (the validator key).
    pub key: PublicKey,
    /// `consensus.byzantine` from its config, if set.
    pub byzantine: Option<String>,
}

impl NodeInfo {
    /// `http://<api>`.
    pub fn rpc(&self) -> String {
        format!("http://{}", self.api)
    }

    /// `http://<api><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    pub fn log(&self) -> PathBuf {
        self.home.join(LOG_FILE)
    }

    /// "validator" or "byzantine (BEHAVIOUR)".
    pub fn role(&self) -> String {
        match &self.byzantine {
            Some(b) => format!("byzantine ({b})"),
            None => "validator".into(),
        }
    }

    /// The TCP ports the node binds: p2p (if its multiaddr names one) and
    /// API, each with what it is for.
    pub fn ports(&self) -> Vec<(IpAddr, u16, &'static str)> {
        let mut ports = Vec::new();
        if let Some((ip, port)) = tcp_of_multiaddr(&self.p2p) {
            ports.push((ip, port, "peer-to-peer"));
        }
        ports.push((self.api.ip(), self.api.port(), "HTTP API"));
        ports
    }
}

/// `/ip4/A/tcp/P` or `/ip6/A/tcp/P` as an address and port.
pub fn tcp_of_multiaddr(addr: &str) -> Option<(IpAddr, u16)> {
    let parts: Vec<&str> = addr.split('/').collect();
    match parts.as_slice() {
        ["", "ip4" | "ip6", ip, "tcp", port, ..] => Some((ip.parse().ok()?, port.parse().ok()?)),
        _ => None,
    }
}

/// A network directory and its nodes, in index order.
#[derive(Debug, Clone)]
pub struct Network {
    /// The directory (absolute).
    pub dir: PathBuf,
    pub chain_id: ChainId,
    pub nodes: Vec<NodeInfo>,
}

/// The address (public key, hex) in a key file.
pub fn address_of(key_file: &Path) -> anyhow::Result<String> {
    let key = phalanx_crypto::keyfile::load_key_file(key_file)
        .with_context(|| format!("reading {}", key_file.display()))?;
    Ok(phalanx_chain::Address::from(key.keypair.public()).to_string())
}

/// True if `dir` holds a network (its `node0/` exists).
pub fn exists(dir: &Path) -> bool {
    dir.join("node0").is_dir()
}

/// `dir` made absolute (without resolving symlinks of a path that may not
/// exist yet).
pub fn absolute(dir: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))
}

impl Network {
    /// Reads every `node<i>/` of `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Network> {
        if !exists(dir) {
            bail!(
                "no network in {} (no node0/): start one with `phalanx-testnet up --dir {}`",
                dir.display(),
                dir.display()
            );
        }
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        let mut nodes = Vec::new();
        let mut chain_id = None;
        for index in 0..MAX_VALIDATORS {
            let home = dir.join(format!("node{index}"));
            if !home.is_dir() {
                break;
            }
            let loaded = phalanx_node::node::load_home(&home)
                .with_context(|| format!("reading node {index} in {}", home.display()))?;
            let key = loaded.key.public();
            let p2p = if loaded.config.p2p.listen.is_empty() {
                loaded
                    .genesis
                    .validators
                    .iter()
                    .find(|v| v.public_key == key)
                    .map(|v| v.address.clone())
                    .ok_or_else(|| {
                        anyhow!("node {index}: its key is not a validator in its genesis.toml")
                    })?
            } else {
                loaded.config.p2p.listen.clone()
            };
            chain_id.get_or_insert(loaded.genesis.chain_id.clone());
            nodes.push(NodeInfo {
                index,
                home,
                api: loaded.config.api.listen,
                p2p,
                key,
                byzantine: loaded.config.consensus.byzantine.clone(),
            });
        }
        let chain_id = chain_id.ok_or_else(|| anyhow!("{} has no node0/", dir.display()))?;
        Ok(Network {
            dir,
            chain_id,
            nodes,
        })
    }

    /// Node `index`, or an error naming the valid range.
    pub fn node(&self, index: usize) -> anyhow::Result<&NodeInfo> {
        self.nodes.get(index).ok_or_else(|| {
            anyhow!(
                "node {index} does not exist: the network in {} has nodes 0 to {}",
                self.dir.display(),
                self.nodes.len().saturating_sub(1)
            )
        })
    }

    pub fn accounts_dir(&self) -> PathBuf {
        self.dir.join("accounts")
    }

    /// The faucet's key file (the first funded account).
    pub fn faucet(&self) -> PathBuf {
        self.accounts_dir().join("0.json")
    }

    /// The funded accounts' key files, `accounts/0.json`, `1.json`, ... in
    /// order, stopping at the first missing number.
    pub fn account_files(&self) -> Vec<PathBuf> {
        (0..MAX_ACCOUNTS)
            .map(|j| self.accounts_dir().join(format!("{j}.json")))
            .take_while(|p| p.is_file())
            .collect()
    }

    /// f = floor((n - 1) / 3); a quorum is n - f.
    pub fn quorum(&self) -> usize {
        let n = self.nodes.len();
        n - n.saturating_sub(1) / 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiaddrs_give_their_tcp_port() {
        assert_eq!(
            tcp_of_multiaddr("/ip4/127.0.0.1/tcp/26650"),
            Some(("127.0.0.1".parse().unwrap(), 26650))
        );
        assert_eq!(
            tcp_of_multiaddr("/ip6/::1/tcp/7/p2p/x"),
            Some(("::1".parse().unwrap(), 7))
        );
        assert_eq!(tcp_of_multiaddr("/memory/3"), None);
        assert_eq!(tcp_of_multiaddr("/ip4/127.0.0.1/udp/1"), None);
    }
}
