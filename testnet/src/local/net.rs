//! A network directory as the commands see it: `node<i>/` home
//! directories (config.toml, genesis.toml, key, data, node.log) and
//! `accounts/<j>.json`, read back from disk so that every command works on
//! a directory made by an earlier one.
//!
//! Where a node is dialed comes from genesis on a BFT chain (every node is
//! a validator there). A proof-of-work genesis lists no one: a node is
//! dialed where the other nodes' `p2p.peers` say, or at its `p2p.listen`.

use anyhow::{Context, anyhow, bail};
use phalanx_chain::genesis::PowParams;
use phalanx_chain::{ChainId, ConsensusKind};
use phalanx_crypto::PublicKey;
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::str::FromStr;

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
    /// Where its HTTP API listens.
    pub api: SocketAddr,
    /// The host its API is reached at: `api`'s address, or the host of its
    /// genesis address when the API listens on every interface.
    pub rpc_host: Host,
    /// Its address in genesis (a multiaddr): what its peers dial.
    pub p2p: String,
    /// What it listens on for peers (a multiaddr).
    pub p2p_listen: String,
    /// Its node key (the validator key).
    pub key: PublicKey,
    /// True if genesis lists it as a validator (every node of a BFT
    /// network; none with proof of work).
    pub validator: bool,
    /// `consensus.byzantine` from its config, if set.
    pub byzantine: Option<String>,
    /// Proof of work: its `mining.hashrate_limit` if it mines (0:
    /// unlimited), `None` if it does not.
    pub hashrate_limit: Option<u64>,
    /// How many peers its config names (`p2p.peers`): with proof of work,
    /// the nodes it connects to.
    pub dials: usize,
}

impl NodeInfo {
    /// `http://<host>:<port>` of its HTTP API.
    pub fn rpc(&self) -> String {
        format!("http://{}:{}", self.rpc_host.in_url(), self.api.port())
    }

    /// `http://<host>:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.rpc())
    }

    pub fn log(&self) -> PathBuf {
        self.home.join(LOG_FILE)
    }

    /// "validator", "miner (375.00k H/s)" (its limit), "node" (proof of
    /// work, not mining) or "byzantine (BEHAVIOUR)".
    pub fn role(&self) -> String {
        match (&self.byzantine, self.hashrate_limit) {
            (Some(b), _) => format!("byzantine ({b})"),
            (None, Some(0)) => "miner (unlimited)".into(),
            (None, Some(limit)) => {
                format!("miner ({} H/s)", super::pow::short_number(limit as f64))
            }
            (None, None) if self.validator => "validator".into(),
            (None, None) => "node".into(),
        }
    }

    /// The TCP ports the node binds: p2p (if its multiaddr names one) and
    /// API, each with what it is for.
    pub fn ports(&self) -> Vec<(IpAddr, u16, &'static str)> {
        let mut ports = Vec::new();
        if let Some((ip, port)) = tcp_of_multiaddr(&self.p2p_listen) {
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

/// The host part of an `/ip4`, `/ip6` or `/dns` multiaddr.
pub fn host_of_multiaddr(addr: &str) -> Option<Host> {
    let parts: Vec<&str> = addr.split('/').collect();
    match parts.as_slice() {
        ["", "ip4" | "ip6", ip, ..] => Some(Host::Ip(ip.parse().ok()?)),
        ["", "dns" | "dns4" | "dns6", name, ..] => name.parse().ok(),
        _ => None,
    }
}

/// A machine a node runs on: an IP address or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl Host {
    /// Its multiaddr for TCP port `port`.
    pub fn multiaddr(&self, port: u16) -> String {
        match self {
            Host::Ip(IpAddr::V4(a)) => format!("/ip4/{a}/tcp/{port}"),
            Host::Ip(IpAddr::V6(a)) => format!("/ip6/{a}/tcp/{port}"),
            Host::Name(n) => format!("/dns/{n}/tcp/{port}"),
        }
    }

    /// As it is written in a URL (IPv6 in brackets).
    pub fn in_url(&self) -> String {
        match self {
            Host::Ip(IpAddr::V6(a)) => format!("[{a}]"),
            Host::Ip(a) => a.to_string(),
            Host::Name(n) => n.clone(),
        }
    }

    /// True if it is this machine: an address it resolves to can be bound
    /// here (loopback, or one of this machine's interfaces).
    pub fn is_this_machine(&self) -> bool {
        let ips: Vec<IpAddr> = match self {
            Host::Ip(ip) => vec![*ip],
            Host::Name(n) => match (n.as_str(), 0).to_socket_addrs() {
                Ok(addrs) => addrs.map(|a| a.ip()).collect(),
                Err(_) => return false,
            },
        };
        ips.iter()
            .any(|ip| std::net::UdpSocket::bind((*ip, 0)).is_ok())
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(a) => write!(f, "{a}"),
            Host::Name(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for Host {
    type Err = String;

    /// An IPv4 or IPv6 address (brackets allowed), or a DNS name (labels of
    /// letters, digits and inner hyphens, at most 253 characters).
    fn from_str(s: &str) -> Result<Host, String> {
        let bare = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(s);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            if ip.is_unspecified() {
                return Err(format!(
                    "{s} is not a host peers can dial (name the machine's address)"
                ));
            }
            return Ok(Host::Ip(ip));
        }
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        let name = s.strip_suffix('.').unwrap_or(s);
        if name.len() <= 253 && name.split('.').all(label_ok) {
            Ok(Host::Name(name.to_ascii_lowercase()))
        } else {
            Err(format!("`{s}` is neither an IP address nor a host name"))
        }
    }
}

/// A network directory and its nodes, in index order.
#[derive(Debug, Clone)]
pub struct Network {
    /// The directory (absolute).
    pub dir: PathBuf,
    pub chain_id: ChainId,
    /// The protocol its genesis names.
    pub consensus: ConsensusKind,
    /// Its genesis `[pow]` section (proof of work only).
    pub pow: Option<PowParams>,
    pub nodes: Vec<NodeInfo>,
}

/// Node `index` of a network whose homes are `homes`.
fn node_info(
    index: usize,
    home: &Path,
    loaded: &phalanx_node::node::Home,
    homes: &[(PathBuf, phalanx_node::node::Home)],
) -> anyhow::Result<NodeInfo> {
    let key = loaded.key.public();
    let in_genesis = loaded
        .genesis
        .validators
        .iter()
        .find(|v| v.public_key == key)
        .map(|v| v.address.clone());
    let p2p = match in_genesis {
        Some(address) => address,
        None if loaded.genesis.consensus.is_bft() => {
            bail!("node {index}: its key is not a validator in its genesis.toml")
        }
        None => dialed_at(&key, homes)
            .or_else(|| {
                (!loaded.config.p2p.listen.is_empty()).then(|| loaded.config.p2p.listen.clone())
            })
            .ok_or_else(|| {
                anyhow!(
                    "node {index}: neither its p2p.listen nor another node's p2p.peers says \
                     where it is reached"
                )
            })?,
    };
    let p2p_listen = if loaded.config.p2p.listen.is_empty() {
        phalanx_node::node::listen_address_for(&p2p)
    } else {
        loaded.config.p2p.listen.clone()
    };
    let api = loaded.config.api.listen;
    let rpc_host = if api.ip().is_unspecified() {
        host_of_multiaddr(&p2p).unwrap_or(Host::Ip(IpAddr::from([127, 0, 0, 1])))
    } else {
        Host::Ip(api.ip())
    };
    Ok(NodeInfo {
        index,
        home: home.to_owned(),
        api,
        rpc_host,
        p2p,
        p2p_listen,
        key,
        validator: loaded
            .genesis
            .validators
            .iter()
            .any(|v| v.public_key == key),
        byzantine: loaded.config.consensus.byzantine.clone(),
        hashrate_limit: loaded
            .config
            .mining
            .enabled
            .then_some(loaded.config.mining.hashrate_limit),
        dials: loaded.config.p2p.peers.len(),
    })
}

/// Where the other nodes dial `key`, from their `p2p.peers`.
fn dialed_at(key: &PublicKey, homes: &[(PathBuf, phalanx_node::node::Home)]) -> Option<String> {
    homes
        .iter()
        .flat_map(|(_, h)| &h.config.p2p.peers)
        .filter_map(|peer| phalanx_node::config::parse_peer(peer).ok())
        .find(|(peer, _)| peer == key)
        .map(|(_, address)| address)
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
        let mut homes = Vec::new();
        for index in 0..MAX_VALIDATORS {
            let home = dir.join(format!("node{index}"));
            if !home.is_dir() {
                break;
            }
            let loaded = phalanx_node::node::load_home(&home)
                .with_context(|| format!("reading node {index} in {}", home.display()))?;
            homes.push((home, loaded));
        }
        let (chain_id, consensus, pow) = homes
            .first()
            .map(|(_, h)| {
                (
                    h.genesis.chain_id.clone(),
                    h.genesis.consensus,
                    h.genesis.pow.clone(),
                )
            })
            .ok_or_else(|| anyhow!("{} has no node0/", dir.display()))?;
        let nodes = homes
            .iter()
            .enumerate()
            .map(|(index, (home, loaded))| node_info(index, home, loaded, &homes))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Network {
            dir,
            chain_id,
            consensus,
            pow,
            nodes,
        })
    }

    /// "validator" on a BFT network, "miner" with proof of work.
    pub fn member_noun(&self) -> &'static str {
        if self.consensus.is_bft() {
            "validator"
        } else {
            "miner"
        }
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

    #[test]
    fn hosts_parse_and_format() {
        let ip: Host = "10.0.0.2".parse().unwrap();
        assert_eq!(ip.multiaddr(26650), "/ip4/10.0.0.2/tcp/26650");
        assert_eq!(ip.in_url(), "10.0.0.2");
        let v6: Host = "[fd00::2]".parse().unwrap();
        assert_eq!(v6.multiaddr(7), "/ip6/fd00::2/tcp/7");
        assert_eq!(v6.in_url(), "[fd00::2]");
        let name: Host = "Node-1.Example.org.".parse().unwrap();
        assert_eq!(name, Host::Name("node-1.example.org".into()));
        assert_eq!(name.multiaddr(26650), "/dns/node-1.example.org/tcp/26650");
        for bad in [
            "", "a b", "-x", "x-", "a..b", "0.0.0.0", "::", "ex_ample", "héllo",
        ] {
            assert!(bad.parse::<Host>().is_err(), "{bad:?}");
        }
        assert_eq!(
            host_of_multiaddr("/dns/node-1.example.org/tcp/1"),
            Some(name)
        );
        assert_eq!(host_of_multiaddr("/ip4/10.0.0.2/tcp/1"), Some(ip));
        assert_eq!(host_of_multiaddr("/memory/1"), None);
    }

    #[test]
    fn loopback_is_this_machine() {
        assert!(Host::Ip("127.0.0.1".parse().unwrap()).is_this_machine());
        assert!(Host::Name("localhost".into()).is_this_machine());
        // TEST-NET-3 (RFC 5737): never an address of this machine.
        assert!(!Host::Ip("203.0.113.7".parse().unwrap()).is_this_machine());
    }
}
