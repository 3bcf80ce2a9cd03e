//! Home directories for a local network: one per validator, each with its
//! key file, the shared genesis and a config with its own ports. Used by
//! the tests and by `phalanx-testnet init`.

use crate::config::{CONFIG_FILE, Config, GENESIS_FILE};
use anyhow::Context;
use phalanx_chain::genesis::{GenesisAccount, GenesisValidator};
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
    let validator_keys = (0..spec.nodes.len())
        .map(|_| Keypair::generate())
        .collect::<Result<Vec<_>, _>>()?;
    let account_keys = (0..spec.accounts)
        .map(|_| Keypair::generate())
        .collect::<Result<Vec<_>, _>>()?;
    let genesis = Genesis {
        chain_id: spec.chain_id.clone(),
        consensus: spec.consensus,
        genesis_time_ms: crate::driver::now_ms(),
        validators: validator_keys
            .iter()
            .zip(&spec.nodes)
            .map(|(k, addrs)| GenesisValidator {
                public_key: k.public(),
                address: addrs.p2p.clone(),
            })
            .collect(),
        pow: None,
        accounts: account_keys
            .iter()
            .map(|k| GenesisAccount {
                address: Address::from(k.public()),
                balance: Amount(spec.balance),
            })
            .collect(),
    };
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
