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

/// What to create.
#[derive(Debug, Clone)]
pub struct LocalNetSpec {
    pub chain_id: ChainId,
    pub validators: usize,
    /// Validator i listens for peers on `p2p_ports[i]` and serves HTTP on
    /// `api_ports[i]`, both on `host`.
    pub host: String,
    pub p2p_ports: Vec<u16>,
    pub api_ports: Vec<u16>,
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
    anyhow::ensure!(
        spec.p2p_ports.len() == spec.validators && spec.api_ports.len() == spec.validators,
        "one p2p and one API port per validator"
    );
    let validator_keys = (0..spec.validators)
        .map(|_| Keypair::generate())
        .collect::<Result<Vec<_>, _>>()?;
    let account_keys = (0..spec.accounts)
        .map(|_| Keypair::generate())
        .collect::<Result<Vec<_>, _>>()?;
    let genesis = Genesis {
        chain_id: spec.chain_id.clone(),
        consensus: ConsensusKind::Hotstuff,
        genesis_time_ms: crate::driver::now_ms(),
        validators: validator_keys
            .iter()
            .zip(&spec.p2p_ports)
            .map(|(k, port)| GenesisValidator {
                public_key: k.public(),
                address: format!("/ip4/{}/tcp/{port}", spec.host),
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
    for (i, key) in validator_keys.iter().enumerate() {
        let home = dir.join(format!("node{i}"));
        std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
        let mut config = spec.config.clone();
        let api_port = spec.api_ports.get(i).copied().unwrap_or_default();
        config.api.listen = format!("{}:{api_port}", spec.host)
            .parse()
            .with_context(|| format!("{}:{api_port} is not a socket address", spec.host))?;
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
