//! Home directories for a local network: one per node, each with its key
//! file, the shared genesis and a config with its own ports. Used by the
//! tests and by `phalanx-testnet init`.
//!
//! A BFT network ([`write_local_net`]) lists every node as a genesis
//! validator, so the nodes find each other through genesis. A
//! proof-of-work network ([`write_local_pow_net`]) has no committee: its
//! genesis carries the `[pow]` parameters and no validators, and each
//! node's config names where it listens (`p2p.listen`), every other node
//! as a peer (`p2p.peers`), and its miner (`[mining]`).

use crate::config::{CONFIG_FILE, Config, GENESIS_FILE};
use anyhow::Context;
use phalanx_chain::genesis::{GenesisAccount, GenesisValidator, PowParams};
use phalanx_chain::{Address, Amount, ChainId, ConsensusKind, Genesis};
use phalanx_crypto::Keypair;
use phalanx_crypto::keyfile::write_key_file;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where one validator is reached and what it binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddrs {
    /// The multiaddr its peers dial (its address in genesis), e.g.
    /// `/ip4/10.0.0.2/tcp/26650` or `/dns/node2.example/tcp/26650`.
    pub p2p: String,
    /// What it listens on for peers (`p2p.listen`); empty: `p2p` itself,
    /// or all interfaces when `p2p` is a `/dns` name.
    pub p2p_listen: String,
    /// Where its HTTP API listens (`api.listen`).
    pub api_listen: SocketAddr,
}

impl NodeAddrs {
    /// Both ports on 127.0.0.1.
    pub fn loopback(p2p_port: u16, api_port: u16) -> NodeAddrs {
        NodeAddrs {
            p2p: format!("/ip4/127.0.0.1/tcp/{p2p_port}"),
            p2p_listen: String::new(),
            api_listen: SocketAddr::from(([127, 0, 0, 1], api_port)),
        }
    }
}

/// Where [`free_loopback_base`] looks: from here up to the start of the
/// OS's ephemeral range.
const FREE_PORTS_FROM: u16 = 10_000;

/// Where the OS's ephemeral range starts: it takes the local ports of
/// outgoing connections from there (Linux's default is 32768).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A base port P with P .. P + `span` free on 127.0.0.1 right now, for a
/// network of processes that are told their ports before they bind them.
///
/// Ports are taken below the ephemeral range, because a port the OS
/// reports free inside it (what binding port 0 gives) can be handed to any
/// outgoing connection, another node's dial or an HTTP client, before the
/// process that was meant to listen on it starts. Successive calls in one
/// process walk on from a start derived from the process id, so parallel
/// tests in one binary get disjoint ranges.
pub fn free_loopback_base(span: u16) -> anyhow::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = span.max(1);
    let low = u32::from(FREE_PORTS_FROM);
    let high =
        u32::from(ephemeral_start().max(FREE_PORTS_FROM.saturating_add(span.saturating_mul(64))));
    let width = high.saturating_sub(low + u32::from(span));
    if width == 0 {
        anyhow::bail!("{span} ports do not fit between {FREE_PORTS_FROM} and 65535");
    }
    // 0 means "not started yet": start where this process's id says.
    let _ = NEXT.compare_exchange(
        0,
        1 + std::process::id().wrapping_mul(7_919) % width,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..width / u32::from(span) {
        let offset = NEXT.fetch_add(u32::from(span), Ordering::Relaxed) % width;
        let Ok(base) = u16::try_from(low + offset) else {
            continue;
        };
        let free = (0..span).all(|i| {
            base.checked_add(i)
                .is_some_and(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        });
        if free {
            return Ok(base);
        }
    }
    anyhow::bail!("no {span} consecutive free ports on 127.0.0.1 from {FREE_PORTS_FROM}")
}

/// What to create.
#[derive(Debug, Clone)]
pub struct LocalNetSpec {
    pub chain_id: ChainId,
    /// The genesis `consensus` (a BFT kind: every node is a validator).
    pub consensus: ConsensusKind,
    /// One entry per validator.
    pub nodes: Vec<NodeAddrs>,
    /// Funded accounts (their keys are written to `accounts/`).
    pub accounts: usize,
    pub balance: u64,
    /// Applied to every node's config.
    pub config: Config,
}

/// What a proof-of-work network adds to a [`LocalNetSpec`].
#[derive(Debug, Clone)]
pub struct LocalPowSpec {
    /// The genesis `[pow]` section.
    pub params: PowParams,
    /// Node i's `mining.hashrate_limit` (one entry per node); `None`: node
    /// i does not mine (it validates and relays).
    pub hashrate_limits: Vec<Option<u64>>,
}

/// What was created.
#[derive(Debug, Clone)]
pub struct LocalNet {
    pub genesis: Genesis,
    /// Each validator's home directory.
    pub homes: Vec<PathBuf>,
    pub validator_keys: Vec<Keypair>,
    pub account_keys: Vec<Keypair>,
    pub api_addrs: Vec<SocketAddr>,
}

/// Writes `dir/node<i>/` for every validator and `dir/accounts/<j>.json`
/// for every funded account. Refuses to overwrite existing key files.
pub fn write_local_net(dir: &Path, spec: &LocalNetSpec) -> anyhow::Result<LocalNet> {
    write_net(dir, spec, None)
}

/// Writes a proof-of-work network: `dir/node<i>/` for every node (each
/// one listening on its address of `spec.nodes`, dialing all the others,
/// mining as `pow.hashrate_limits` says) and `dir/accounts/<j>.json` for
/// every funded account. `spec.consensus` must be `pow`.
pub fn write_local_pow_net(
    dir: &Path,
    spec: &LocalNetSpec,
    pow: &LocalPowSpec,
) -> anyhow::Result<LocalNet> {
    anyhow::ensure!(
        spec.consensus == ConsensusKind::Pow,
        "a proof-of-work network needs consensus pow, not {}",
        spec.consensus
    );
    anyhow::ensure!(
        pow.hashrate_limits.len() == spec.nodes.len(),
        "{} hash-rate limits for {} nodes",
        pow.hashrate_limits.len(),
        spec.nodes.len()
    );
    write_net(dir, spec, Some(pow))
}

fn write_net(
    dir: &Path,
    spec: &LocalNetSpec,
    pow: Option<&LocalPowSpec>,
) -> anyhow::Result<LocalNet> {
    let validator_keys = (0..spec.nodes.len())
        .map(|_| Keypair::generate())
        .collect::<Result<Vec<_>, _>>()?;
    let account_keys = (0..spec.accounts)
        .map(|_| Keypair::generate())
        .collect::<Result<Vec<_>, _>>()?;
    let genesis = genesis(spec, pow, &validator_keys, &account_keys);
    genesis.validate()?;
    let genesis_text = genesis.to_toml()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let accounts_dir = dir.join("accounts");
    std::fs::create_dir_all(&accounts_dir)?;
    for (j, key) in account_keys.iter().enumerate() {
        write_key_file(&accounts_dir.join(format!("{j}.json")), key)?;
    }
    let mut homes = Vec::new();
    let mut api_addrs = Vec::new();
    for (i, (key, addrs)) in validator_keys.iter().zip(&spec.nodes).enumerate() {
        let home = dir.join(format!("node{i}"));
        std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
        let mut config = spec.config.clone();
        config.api.listen = addrs.api_listen;
        config.p2p.listen.clone_from(&addrs.p2p_listen);
        if let Some(pow) = pow {
            configure_pow_node(&mut config, i, spec, pow, &validator_keys);
        }
        api_addrs.push(config.api.listen);
        std::fs::write(home.join(CONFIG_FILE), toml::to_string(&config)?)?;
        std::fs::write(home.join(GENESIS_FILE), &genesis_text)?;
        write_key_file(&home.join(&config.node.key_file), key)?;
        homes.push(home);
    }
    Ok(LocalNet {
        genesis,
        homes,
        validator_keys,
        account_keys,
        api_addrs,
    })
}

/// The genesis: BFT networks list every node as a validator, a
/// proof-of-work network none (and its `[pow]` section).
fn genesis(
    spec: &LocalNetSpec,
    pow: Option<&LocalPowSpec>,
    validator_keys: &[Keypair],
    account_keys: &[Keypair],
) -> Genesis {
    let validators = match pow {
        Some(_) => Vec::new(),
        None => validator_keys
            .iter()
            .zip(&spec.nodes)
            .map(|(k, addrs)| GenesisValidator {
                public_key: k.public(),
                address: addrs.p2p.clone(),
            })
            .collect(),
    };
    Genesis {
        chain_id: spec.chain_id.clone(),
        consensus: spec.consensus,
        genesis_time_ms: crate::driver::now_ms(),
        validators,
        pow: pow.map(|p| p.params.clone()),
        accounts: account_keys
            .iter()
            .map(|k| GenesisAccount {
                address: Address::from(k.public()),
                balance: Amount(spec.balance),
            })
            .collect(),
    }
}

/// Node `i` of a proof-of-work network: it listens where its peers dial
/// it (every interface for a host name), dials every other node, and
/// mines at its limit (or not at all).
fn configure_pow_node(
    config: &mut Config,
    i: usize,
    spec: &LocalNetSpec,
    pow: &LocalPowSpec,
    keys: &[Keypair],
) {
    if let Some(addrs) = spec.nodes.get(i)
        && config.p2p.listen.is_empty()
    {
        config.p2p.listen = crate::node::listen_address_for(&addrs.p2p);
    }
    config.p2p.peers = keys
        .iter()
        .zip(&spec.nodes)
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, (key, addrs))| format!("{}@{}", key.public(), addrs.p2p))
        .collect();
    match pow.hashrate_limits.get(i).copied().flatten() {
        Some(limit) => {
            config.mining.enabled = true;
            config.mining.threads = 1;
            config.mining.hashrate_limit = limit;
        }
        None => config.mining.enabled = false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn free_ranges_are_below_the_ephemeral_range_disjoint_and_bindable() {
        let a = free_loopback_base(8).unwrap();
        let b = free_loopback_base(8).unwrap();
        for base in [a, b] {
            assert!(base >= FREE_PORTS_FROM);
            assert!(base + 8 <= ephemeral_start().max(FREE_PORTS_FROM + 8 * 64));
            let held: Vec<_> = (base..base + 8)
                .map(|p| std::net::TcpListener::bind(("127.0.0.1", p)).unwrap())
                .collect();
            drop(held);
        }
        assert!(a + 8 <= b || b + 8 <= a, "{a} and {b} overlap");
        assert!(free_loopback_base(60_000).is_err());
    }
}
